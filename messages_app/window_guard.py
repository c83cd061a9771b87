"""A mailing's local-time window (mailings.window) as its launcher and dispatchers apply it.

- The launcher creates the messages of closed zones already due at their zone's next opening
  (messages_create_for_clients), so a message of a closed zone is not due.
- A dispatcher claims with `claim_condition`: only messages of zones where a request may start
  now, at least SENDER_WINDOW_MARGIN before the window closes.
- When a zone's window closes while its messages are still pending, the dispatcher that notices
  it (the split of zones is checked at every claim) defers that zone group to its next opening.
- A message that became due in a closed zone anyway (a retry, a released lease) is deferred when a
  dispatcher finds due messages but nothing to claim.

Calls run in the caller's database thread. The ~600 zones are split into open and closed again
only when one of them opens or closes (a few times an hour), which takes some 25 ms.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q

from mailings.models import Mailing
from mailings.window import LocalWindow, ZoneSplit, all_zones, split_zones

from . import services

log = logging.getLogger(__name__)

# A dispatcher taking over from another one also defers the zones that closed this recently: the
# previous one may have stopped between their close and its next claim.
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
        """Messages a dispatcher may hand out now: those of clients whose window is open (and of
        deleted clients, which fail at once)."""
        split = self.split(now)
        if split is None:
            return None
        return Q(client__isnull=True) | Q(client__timezone__in=sorted(split.open_until))

    def closed_zones(self, now: datetime) -> dict[str, datetime]:
        """Each zone where no request may start now, with its next opening; empty without a window."""
        split = self.split(now)
        return {} if split is None else split.closed_until

    def next_attempt_at(self, now: datetime) -> datetime | None:
        """When the mailing's earliest pending message is due, as services.messages_next_attempt_at;
        due messages found in closed zones (nothing was claimable) are first deferred to their opening."""
        due = services.messages_next_attempt_at(mailing_id=self.mailing_id)
        split = self.split(now)
        if due is None or due > now or split is None:
            return due
        services.messages_wait_for_window(mailing_id=self.mailing_id, openings=split.closed_until, due_by=now)
        return services.messages_next_attempt_at(mailing_id=self.mailing_id)
