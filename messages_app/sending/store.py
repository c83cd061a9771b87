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
    client_id: int | None  # None when the client was deleted after the fan-out: not sent
    phone: str  # the recipient copied at fan-out
    attempt: int  # this one's number, counting from 1
    unanswered: bool = False  # an earlier attempt's answer never came: it may have been accepted
    operator_code: str = ""  # what routes a message to a provider
    attributes: Mapping[str, str] = field(default_factory=dict)  # what the text's placeholders put in


@dataclass(frozen=True, slots=True)
class Claim:
    """Rows the sender may send, under one token that fences their results."""

    token: uuid.UUID
    mailing_id: int
    rows: list[ClaimedRow]


@dataclass(frozen=True, slots=True)
class WeightChange:
    """A provider's weight moved by a sender, and why (`routing.Weights`)."""

    provider: str
    weight_from: int
    weight_to: int
    reason: str
    at: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class DeliverySpeed:
    """How fast a provider's recent messages reached the phones, by its delivery receipts."""

    judged: int  # messages sent long enough ago for their delay to tell
    slow: int  # of those, delivered later than the threshold, or not yet
    delivered: int  # of those, with their receipt (none at all: receipts may not be reaching us)

    @property
    def slow_share(self) -> float:
        return self.slow / self.judged if self.judged else 0.0


@dataclass(frozen=True, slots=True)
class SenderView:
    """What the sender learns at each refresh."""

    sendable: list[tuple[int, Template, datetime]]  # (id, text template, end) of each mailing it may send for
    held: set[int]  # the mailings it holds a slot of: only for these may it claim
    ends: dict[int, datetime]  # the ends of its mailings with requests in flight
    pauses: dict[str, float]  # provider name -> wall-clock seconds of its shared pause still in force
    providers_version: str = ""  # changes whenever a provider is added, changed or deleted


class MessageStore(Protocol):
    """Every method may raise StoreUnavailable."""

    holder: str  # names the sender in leases and slots

    async def look(self, *, in_flight_mailings: list[int], tokens: list[uuid.UUID]) -> SenderView:
        """The sendable mailings; holds a slot of each, renews the leases of `tokens`, and tells that
        this sender is alive."""

    async def claim(
        self, *, asks: list[tuple[int, int]], wanted: int, providers: list[str]
    ) -> tuple[list[Claim], dict[str, float]]:
        """Claims `(mailing id, share)` in turn, `wanted` in all; none while every one of
        `providers` is paused. Returns the claims and the pauses in force (wall-clock seconds)."""

    async def record(self, *, results: list[Result]) -> int:
        """Writes results, each fenced by its claim's token."""

    async def release_expired_leases(self) -> int: ...

    async def expire_pending(self, *, mailing_id: int) -> int: ...

    async def pause(self, *, provider: str, until: float) -> None:
        """Every sender of every worker pauses this provider until `until` (wall-clock seconds)."""

    async def record_weight_changes(self, *, changes: list[WeightChange]) -> None: ...

    async def delivery_speeds(
        self, *, providers: list[str], slow_after: float, window: float
    ) -> dict[str, DeliverySpeed]:
        """Each of `providers` that sends delivery receipts (one that sent nothing too): how many of
        its messages sent within the last `window` seconds and at least `slow_after` ago were
        delivered later than `slow_after` seconds after their acceptance, or not yet."""

    async def release_slots(self) -> int:
        """A stopping sender gives its slots back and is no longer counted alive."""

    def close(self) -> None: ...
