"""How many SMS segments a text costs (3GPP TS 23.038 alphabets, TS 23.040 concatenation).

Pure functions, no Django: the API, the serializers and the admin ask the same question.
"""

from dataclasses import dataclass

# The GSM 03.38 default alphabet: one septet each.
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Its extension table: an escape septet plus one, so two septets each.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

# One segment alone holds this much; a concatenated one loses room to its header (UDH).
GSM7_SINGLE, GSM7_PART = 160, 153  # septets
UCS2_SINGLE, UCS2_PART = 70, 67  # UTF-16 code units


@dataclass(frozen=True, slots=True)
class Segments:
    encoding: str  # "GSM-7" or "UCS-2"
    count: int
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2) in the whole text
    per_segment: int  # what each of `count` segments can hold


def sms_segments(text: str) -> Segments:
    """The encoding the text needs and the number of segments it is split into.

    A character is never split between two segments: neither an escaped GSM-7 character nor a
    UTF-16 surrogate pair (an emoji), so a part may hold one unit less than `per_segment`.
    """
    if all(char in GSM7_BASIC or char in GSM7_EXTENDED for char in text):
        sizes = [2 if char in GSM7_EXTENDED else 1 for char in text]
        encoding, single, part = "GSM-7", GSM7_SINGLE, GSM7_PART
    else:
        sizes = [2 if ord(char) > 0xFFFF else 1 for char in text]
        encoding, single, part = "UCS-2", UCS2_SINGLE, UCS2_PART
    units = sum(sizes)
    if units <= single:
        return Segments(encoding, 1 if units else 0, units, single)
    count, room = 1, part
    for size in sizes:
        if size > room:
            count, room = count + 1, part
        room -= size
    return Segments(encoding, count, units, part)
