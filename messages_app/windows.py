"""A mailing's local-time window (mailings.window) as its launcher and senders apply it.

- The launcher creates the messages of closed zones already due at their zone's next opening
  (messages_create_for_clients), so a message of a closed zone is not due.
- A sender claims with `claim_condition`: only messages of zones where a request may start now,
  at least SENDER_WINDOW_MARGIN before the window closes.
- When a zone's window closes while its messages are still due, the sender that notices it (the
  split of zones is checked at every claim) defers that zone group to its next opening.
- A message that came due in a closed zone anyway (a retry, a released lease) is deferred when a
  claim comes back short (`defer_stragglers`): the due messages left then are of closed zones.

Calls run in the caller's database thread. The ~600 zones are split into open and closed again
only when one of them opens or closes (a few times an hour), which takes some 25 ms.
"""

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from mailings.models import Mailing
from mailings.window import LocalWindow, ZoneSplit, all_zones, split_zones
from messages_app import services

log = logging.getLogger(__name__)

# A sender that starts (or takes a mailing over) also defers the zones that closed this recently:
# the previous one may have stopped between their close and its next claim.
HANDOVER = timedelta(minutes=2)


def window_margin() -> timedelta:
    return timedelta(seconds=settings.SENDER_WINDOW_MARGIN)


class WindowGuard:
    def __init__(self, mailing_id: int, window: LocalWindow | None, *, margin: timedelta):
        self.mailing_id = mailing_id
        self.window = window
        self.margin = margin
        self._split: ZoneSplit | None = None

    @classmethod
    def for_mailing(cls, mailing: Mailing) -> "WindowGuard":
        return cls(mailing.pk, mailing.local_window, margin=window_margin())

    def split(self, now: datetime) -> ZoneSplit | None:
        """The zones open and closed at `now`; None when the mailing has no window. Zone groups that
        closed since the last split get their due messages deferred."""
        if self.window is None:
            return None
        if self._split is not None and self._split.is_current(now):
            return self._split
        previous = self._split or split_zones(self.window, all_zones(), now - HANDOVER, margin=self.margin)
        self._split = split_zones(self.window, all_zones(), now, margin=self.margin)
        closed = {
            zone: opens_at
            for zone, opens_at in self._split.closed_until.items()
            if zone in previous.open_until
        }
        # Due ones only: those are what claims would walk past. A later one of these zones (a retry)
        # is deferred when found due (next_attempt_at below).
        deferred = services.messages_wait_for_window(mailing_id=self.mailing_id, openings=closed, due_by=now)
        if deferred:
            log.info(
                "mailing=%s local window closed in %s zones: %s pending messages wait for the next opening",
                self.mailing_id,
                len(closed),
                deferred,
            )
        return self._split

    def claim_condition(self, now: datetime) -> Q | None:
        """Messages a sender may hand out now: those of clients whose window is open (and of
        deleted clients, which fail at once)."""
        split = self.split(now)
        if split is None:
            return None
        return Q(client__isnull=True) | Q(client__timezone__in=sorted(split.open_until))

    def closed_zones(self, now: datetime) -> dict[str, datetime]:
        """Each zone where no request may start now, with its next opening; empty without a window."""
        split = self.split(now)
        return {} if split is None else split.closed_until

    def defer_stragglers(self, now: datetime) -> int:
        """Defer the mailing's due messages of closed zones, which no claim hands out, to their
        zone's opening. Called when a claim came back short: what is still due is (nearly) only those."""
        split = self.split(now)
        if split is None:
            return 0
        return services.messages_wait_for_window(
            mailing_id=self.mailing_id, openings=split.closed_until, due_by=now
        )


class WindowGuards:
    """One sender's guards, one per mailing it claims for, each loaded once (a launched mailing's
    window cannot change). Used from the sender's database thread only."""

    def __init__(self):
        self._guards: dict[int, WindowGuard] = {}

    def __getitem__(self, mailing_id: int) -> WindowGuard:
        guard = self._guards.get(mailing_id)
        if guard is None:
            window = Mailing.objects.filter(pk=mailing_id).values_list(
                "local_window_start", "local_window_end"
            )
            start, end = window.first() or (None, None)  # a deleted mailing: nothing to claim anyway
            guard = WindowGuard(
                mailing_id, LocalWindow(start, end) if start is not None else None, margin=window_margin()
            )
            self._guards[mailing_id] = guard
        return guard

    def keep_only(self, mailing_ids: Iterable[int]) -> None:
        """Forget the guards of mailings the sender no longer sends for."""
        keep = set(mailing_ids)
        self._guards = {mailing_id: guard for mailing_id, guard in self._guards.items() if mailing_id in keep}
