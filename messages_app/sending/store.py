"""What the sending engine needs from the message store, and what it hands back and forth.

The engine knows the store only through `MessageStore`; `django_store.DjangoMessageStore` is the
one implementation, on the database.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from mailings.placeholders import Template

from .outcomes import Result


class StoreUnavailable(Exception):
    """The store could not be reached (a database restart, a failover): try again in a moment."""


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    id: int
    client_id: int | None
    phone: str | None  # None when the client was deleted after the fan-out
    attempt: int
    attributes: Mapping[str, str] = field(default_factory=dict)  # what the text's placeholders put in


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows the sender may send, under one token that fences their results."""

    token: uuid.UUID
    mailing_id: int
    rows: list[ClaimedRow]


@dataclass(frozen=True, slots=True)
class SenderView:
    """What the sender learns at each refresh."""

    sendable: list[tuple[int, Template, datetime]]  # (id, text, end) of each mailing it may send for
    held: set[int]  # the mailings it holds a slot of: only for these may it claim
    ends: dict[int, datetime]  # the ends of its mailings with requests in flight
    paused_until: float | None  # wall-clock seconds of the shared pause, None when none holds


class MessageStore(Protocol):
    """Every method may raise StoreUnavailable."""

    holder: str  # names the sender in leases and slots

    async def look(self, *, in_flight_mailings: list[int], tokens: list[uuid.UUID]) -> SenderView:
        """The sendable mailings; holds a slot of each, renews the leases of `tokens`."""

    async def claim(self, *, asks: list[tuple[int, int]], wanted: int) -> tuple[list[Claim], float | None]:
        """Claims `(mailing id, share)` in turn, `wanted` in all; none while another sender's pause
        holds. Returns the claims and that pause's end (wall-clock seconds), if one holds."""

    async def record(self, *, results: list[Result], deferred_until: float) -> int:
        """Writes results, each fenced by its claim's token; deferred ones due at `deferred_until`."""

    async def release_expired_leases(self) -> int: ...

    async def expire_pending(self, *, mailing_id: int) -> int: ...

    async def pause_all(self, *, until: float) -> None:
        """Every sender of every worker pauses until `until` (wall-clock seconds)."""

    async def release_slots(self) -> int: ...

    def close(self) -> None: ...
