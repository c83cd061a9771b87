"""Delivery receipts in the providers' own formats, and how a receipt proves where it comes from.

Kannel posts a receipt to the `dlr-url` its `sendsms` request carried, with Kannel's escapes filled
in (`%d` the report's type, `%A` the SMSC's reply). Our dlr-url names the message and signs that name
with the provider's receipt secret, so a receipt for a message nobody signed is refused, and the
secret itself never travels. Imports no Django.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

# Kannel's dlr-mask bits: what each report type means for the message (None: not final).
KANNEL_DELIVERED = 1  # delivered to the phone
KANNEL_UNDELIVERED = 2  # not delivered to the phone
KANNEL_QUEUED = 4  # queued on the SMSC
KANNEL_ACCEPTED = 8  # accepted by the SMSC
KANNEL_REJECTED = 16  # rejected by the SMSC
KANNEL_FINAL_REASONS = {
    KANNEL_DELIVERED: "",
    KANNEL_UNDELIVERED: "not delivered to the phone",
    KANNEL_REJECTED: "rejected by the SMSC",
}
KANNEL_TYPES = (KANNEL_DELIVERED, KANNEL_UNDELIVERED, KANNEL_QUEUED, KANNEL_ACCEPTED, KANNEL_REJECTED)
# What we ask for: the final reports only. The others (4 queued on, 8 accepted by the SMSC) change
# nothing, and would double the requests a gateway makes to us.
KANNEL_DLR_MASK = KANNEL_DELIVERED | KANNEL_UNDELIVERED | KANNEL_REJECTED

SIGNATURE_LENGTH = 32  # hex digits of HMAC-SHA256: 128 bits


class MalformedReceipt(ValueError):
    """A receipt that is not in the provider's format: `errors` names each bad field."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(", ".join(f"{name}: {error}" for name, error in errors.items()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Receipt:
    """A final receipt: what became of one message, as its provider says."""

    provider: str
    message_id: int
    delivered: bool
    reason: str  # the provider's, for an undelivered message
    received_at: float  # unix time it reached us

    def encoded(self) -> str:
        """The receipt as it waits in the queue for the writer."""
        return json.dumps([self.provider, self.message_id, self.delivered, self.reason, self.received_at])

    @classmethod
    def decoded(cls, raw: bytes | str) -> "Receipt":
        return cls(*json.loads(raw))


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receipt endpoint answers, and the final receipt to take (None: nothing to take)."""

    status: int
    body: dict
    outcome: str | None  # the receipts metric's label, for what the writer will not count
    receipt: Receipt | None = None


def receipt_answer(
    params: Mapping[str, str], *, provider: str, secret: str | None, received_at: float
) -> Answer:
    """A Kannel report at any of our receipt endpoints (the web's, `manage.py serve_receipts`): 202
    whether or not a message has its id (that is found when it is written), 400 naming the bad
    fields, 403 for a signature that does not match, 404 for a provider without receipts."""
    if secret is None:
        return Answer(404, {"detail": f"provider {provider!r} takes no receipts"}, None)
    try:
        receipt = parse_kannel(params, provider=provider, secret=secret, received_at=received_at)
    except MalformedReceipt as error:
        return Answer(400, {name: [problem] for name, problem in error.errors.items()}, "malformed")
    except PermissionError as error:
        return Answer(403, {"detail": str(error)}, "refused")
    return Answer(202, ACCEPTED, "intermediate" if receipt is None else None, receipt)


ACCEPTED = {"detail": "accepted"}
# Answered when the queue cannot take a receipt: the provider keeps it and tries again later.
QUEUE_DOWN = {"detail": "receipts cannot be queued now; try again later"}


def signature(secret: str, provider: str, subject: int | str) -> str:
    """Signs (provider, subject: a message id, or REPLIES) with the provider's receipt secret."""
    digest = hmac.new(secret.encode(), f"{provider}:{subject}".encode(), hashlib.sha256)
    return digest.hexdigest()[:SIGNATURE_LENGTH]


def signed(secret: str, provider: str, subject: int | str, given: str) -> bool:
    return hmac.compare_digest(signature(secret, provider, subject).encode(), given.encode())


# --- replies: what subscribers send back -----------------------------------------------------------

REPLIES = "replies"  # what the signature of a provider's reply URL signs
# A reply whose first word is one of these asks to receive nothing more (English and Russian, as
# operators' STOP keywords go).
STOP_WORDS = frozenset(
    {"stop", "unsubscribe", "optout", "cancel", "end", "quit", "стоп", "отписка", "отписаться"}
)


def reply_url(base_url: str, provider: str, secret: str) -> str:
    """The URL Kannel's sms-service requests with each reply (its `get-url`): our reply endpoint,
    signed, with Kannel's escapes for the sender and the text (left for Kannel to fill in)."""
    query = urlencode({"sig": signature(secret, provider, REPLIES)})
    return f"{base_url.rstrip('/')}/replies/{provider}/?{query}&from=%p&text=%a"


def asks_to_stop(text: str) -> bool:
    words = text.casefold().split()
    return bool(words) and words[0].strip(".,!") in STOP_WORDS


def replying_phone(sender: str) -> str:
    """The sender as a client's phone, 7XXXXXXXXXX: `+7...` and the national `8...` alike."""
    digits = "".join(character for character in sender if character.isdigit())
    return "7" + digits[1:] if len(digits) == 11 and digits[0] == "8" else digits


def kannel_dlr_url(*, base_url: str, provider: str, secret: str, message_id: int) -> str:
    """The dlr-url of one message: our receipt endpoint, the message, its signature, and Kannel's
    escapes for the report's type and the SMSC's reply (left for Kannel to fill in)."""
    query = urlencode({"id": message_id, "sig": signature(secret, provider, message_id)})
    return f"{base_url.rstrip('/')}/receipts/{provider}/?{query}&type=%d&reply=%A"


def parse_kannel(
    params: Mapping[str, str], *, provider: str, secret: str, received_at: float
) -> Receipt | None:
    """A Kannel report from its dlr-url's parameters: a final Receipt, or None for an intermediate
    report (queued or accepted by the SMSC), which changes nothing.

    Raises MalformedReceipt (bad or missing fields) or PermissionError (a signature that does not
    match: not from our dlr-url).
    """
    errors: dict[str, str] = {}
    raw_id, raw_type, given = params.get("id", ""), params.get("type", ""), params.get("sig", "")
    message_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() and len(raw_id) <= 18 else None
    report_type = int(raw_type) if raw_type.isascii() and raw_type.isdigit() and len(raw_type) <= 3 else None
    if message_id is None:
        errors["id"] = "a message id (digits) is required"
    if report_type not in KANNEL_TYPES:
        errors["type"] = f"one of {', '.join(map(str, KANNEL_TYPES))} is required"
    if not given:
        errors["sig"] = "the signature is required"
    if errors:
        raise MalformedReceipt(errors)
    assert message_id is not None and report_type is not None
    if not signed(secret, provider, message_id, given):
        raise PermissionError("the receipt's signature does not match")
    if report_type not in KANNEL_FINAL_REASONS:
        return None
    # One line, whatever the SMSC put in it, without the start of the message's text an SMPP
    # report ends with.
    reply = " ".join(params.get("reply", "").split()).partition(" text:")[0]
    reason = KANNEL_FINAL_REASONS[report_type]
    if reason and reply:
        reason = f"{reason}: {reply}"
    return Receipt(provider, message_id, report_type == KANNEL_DELIVERED, reason[:255], received_at)
