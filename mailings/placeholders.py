"""A mailing's text with personal fields: `Hello, {name|customer}!` puts in each client's `name`
attribute (clients.attributes), or `customer` for a client without one.

The whole syntax: `{key|fallback}` (key as clients.attributes allows, fallback any text up to
ATTRIBUTE_VALUE_MAX_LENGTH without braces, possibly empty), `{{` and `}}` for literal braces. No
attribute access, no format spec, nothing evaluated: a text is parsed once into literal pieces and
placeholders, and rendering only joins strings. Every placeholder needs its fallback, so that no
client's text depends on whether an attribute was set.

Pure functions, no Django: the API validates with them and the sending engine renders with them.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from clients.attributes import ATTRIBUTE_KEY_PATTERN, ATTRIBUTE_VALUE_MAX_LENGTH

_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_PLACEHOLDER = re.compile(rf"({ATTRIBUTE_KEY_PATTERN})(?:\|(.*))?", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Placeholder:
    key: str
    fallback: str


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Placeholder, ...]
    # For render, which runs once per message sent: the parts with each placeholder's place empty,
    # and (place, key, fallback) of each; twice as fast as testing every part's type.
    _pieces: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _slots: tuple[tuple[int, str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces = tuple(part if isinstance(part, str) else "" for part in self.parts)
        slots = tuple(
            (place, part.key, part.fallback)
            for place, part in enumerate(self.parts)
            if isinstance(part, Placeholder)
        )
        object.__setattr__(self, "_pieces", pieces)
        object.__setattr__(self, "_slots", slots)

    @classmethod
    def verbatim(cls, text: str) -> "Template":
        """A text sent as it is, braces and all."""
        return cls((text,) if text else ())

    @property
    def placeholders(self) -> list[Placeholder]:
        return [part for part in self.parts if isinstance(part, Placeholder)]

    def render(self, attributes: Mapping[str, str]) -> str:
        pieces = list(self._pieces)
        for place, key, fallback in self._slots:
            pieces[place] = attributes.get(key) or fallback
        return "".join(pieces)


class TemplateError(ValueError):
    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__(" ".join(errors))


def parse(text: str) -> Template:
    """The text's literal pieces and placeholders. Raises TemplateError naming every bad placeholder."""
    parts: list[str | Placeholder] = []
    errors: list[str] = []
    literal, position = "", 0
    for token in _TOKEN.finditer(text):
        literal += text[position : token.start()]
        position = token.end()
        found = token.group()
        if found in ("{{", "}}"):
            literal += found[0]
            continue
        inner = token.group(1)
        if inner is None:
            errors.append(
                f"A lone {found!r} at character {token.start() + 1}: write {found * 2} for a brace."
            )
            continue
        placeholder = _PLACEHOLDER.fullmatch(inner)
        if placeholder is None:
            errors.append(
                f"{found} is not a placeholder: write {{key|fallback}} with a key of lowercase letters, "
                "digits and _ (no dots, no format), or {{ and }} for braces."
            )
        elif placeholder.group(2) is None:
            errors.append(f"{found} needs a fallback for clients without {inner}: {{{inner}|...}}.")
        elif len(placeholder.group(2)) > ATTRIBUTE_VALUE_MAX_LENGTH:
            errors.append(f"{found}: a fallback is at most {ATTRIBUTE_VALUE_MAX_LENGTH} characters.")
        else:
            if literal:
                parts.append(literal)
            parts.append(Placeholder(placeholder.group(1), placeholder.group(2)))
            literal = ""
    if errors:
        raise TemplateError(errors)
    literal += text[position:]
    if literal:
        parts.append(literal)
    return Template(tuple(parts))
