"""The mailings one sender works on: which may send now, until when, and claims shared between them.

`refresh` (every second) re-reads from the store which mailings may send now and their ends, holds
one of each such mailing's slots (at most SENDERS_PER_MAILING senders per mailing) and renews the
leases of the sender's claims. A mailing that stops being sendable is no longer claimed for from
the next refresh on; its claims not yet started go back to pending at once. `claim` shares what
the pace allows in turn between the mailings the sender holds a slot of, so a new mailing is
sending within about a second beside a big one.
"""

import logging
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mailings.placeholders import Template
from ops.logging import log_ids

from .clock import Clock
from .cutoffs import Cutoffs
from .routing import Providers
from .store import Claim, MessageStore

log = logging.getLogger(__name__)

DRY_FOR = 0.5  # seconds a mailing whose claim came back short is not asked again


@dataclass(eq=False)
class MailingRun:
    """What one sender knows of a mailing it sends for."""

    id: int
    template: Template  # its text, rendered for each client at send time
    end_at: datetime
    deadline: float = 0.0  # the end on the clock's monotonic time
    held: bool = False  # holds one of the mailing's slots: may claim
    sendable: bool = True
    dry_until: float = 0.0
    expired_pending: bool = False


class InFlight(Protocol):
    def runs(self) -> set[MailingRun]: ...

    def mailing_ids(self) -> list[int]: ...

    def tokens(self) -> list[uuid.UUID]: ...


class MailingRuns:
    def __init__(self, *, store: MessageStore, providers: Providers, cutoffs: Cutoffs, clock: Clock):
        self._store = store
        self._providers = providers
        self._cutoffs = cutoffs
        self._clock = clock
        self._runs: dict[int, MailingRun] = {}
        self._rotation = 0
        self.providers_version: str | None = None  # as of the last refresh

    def __bool__(self) -> bool:
        return bool(self._runs)

    def claimable(self, *, margin: float = 0.0) -> list[MailingRun]:
        """Mailings to claim for now: a slot held, sendable, not dry, `margin` left before the end."""
        now = self._clock.monotonic()
        return [
            run
            for run in self._runs.values()
            if run.held and run.sendable and now >= run.dry_until and now + margin < run.deadline
        ]

    async def refresh(self, in_flight: InFlight) -> None:
        view = await self._store.look(in_flight_mailings=in_flight.mailing_ids(), tokens=in_flight.tokens())
        self._providers.observe_pauses(view.pauses)
        self.providers_version = view.providers_version
        now_wall, now = self._clock.now(), self._clock.monotonic()
        runs: dict[int, MailingRun] = {}
        for mailing_id, template, end_at in view.sendable:
            run = self._runs.get(mailing_id) or MailingRun(mailing_id, template, end_at)
            run.sendable, run.held = True, mailing_id in view.held
            self._move_end(run, end_at, now_wall, now)
            runs[mailing_id] = run
        sendable = set(runs)
        for run in in_flight.runs():
            if run.id in sendable:
                continue
            # Its claims not yet started go back to pending; every object of the mailing is told (one
            # dropped earlier may still have requests waiting in the gate beside a newer one).
            run.sendable = False
            if run.id not in runs:
                self._move_end(run, view.ends.get(run.id, run.end_at), now_wall, now)
                runs[run.id] = run
        await self._expire_ended(runs.keys(), now_wall)
        kept = {
            mailing_id: run
            for mailing_id, run in runs.items()
            if run.sendable or self._cutoffs.sending(mailing_id)
        }
        for mailing_id in self._runs.keys() - kept.keys():
            self._cutoffs.forget(mailing_id)
        self._runs = kept

    async def _expire_ended(self, still_known: Iterable[int], now_wall: datetime) -> None:
        """A mailing this sender dropped because it ended: its pending messages expire at once."""
        known = set(still_known)
        for run in self._runs.values():
            if run.id not in known and run.end_at <= now_wall and not run.expired_pending:
                run.expired_pending = True
                await self._store.expire_pending(mailing_id=run.id)

    def _move_end(self, run: MailingRun, end_at: datetime, now_wall: datetime, now: float) -> None:
        if run.deadline and end_at == run.end_at:
            return
        deadline = now + (end_at - now_wall).total_seconds()
        if run.deadline:
            log.info("mailing=%s end moved to %s", run.id, end_at.isoformat(), extra=log_ids(mailing=run.id))
        # Later extends requests in flight (up to their own limit), earlier cuts them.
        self._cutoffs.set_end(run.id, deadline)
        run.end_at, run.deadline = end_at, deadline

    async def claim(self, wanted: int, *, margin: float) -> list[tuple[MailingRun, Claim]]:
        """Claims up to `wanted` messages, shared in turn between the mailings this sender may claim for."""
        candidates = self.claimable(margin=margin)
        if not candidates:
            return []
        self._rotation = (self._rotation + 1) % len(candidates)
        candidates = candidates[self._rotation :] + candidates[: self._rotation]
        share = math.ceil(wanted / len(candidates))
        claims, pauses = await self._store.claim(
            asks=[(run.id, share) for run in candidates], wanted=wanted, providers=self._providers.names()
        )
        self._providers.observe_pauses(pauses)
        claimed = []
        for claim in claims:
            run = self._runs[claim.mailing_id]
            if len(claim.rows) < share:
                run.dry_until = self._clock.monotonic() + DRY_FOR
            claimed.append((run, claim))
        return claimed
