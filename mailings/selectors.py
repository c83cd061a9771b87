"""Read-side queries over mailings, shared by the API and the admin.

Message counts are taken after pagination: the API and the admin first fetch one page of plain
mailings, then `attach_message_counts` counts that page's messages in one grouped query, and the
messages waiting for their local window in one more when a mailing of the page has a window.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count
from django.utils import timezone

from messages_app.models import WAITING_FOR_WINDOW, Message, MessageStatus

from .models import Mailing

WAITING = "waiting_for_window"
# The keys of every counts dict here: one per message status, "total", then how many of the pending
# ones wait for their client's local window to open (part of "pending", not added to "total").
MESSAGE_COUNT_KEYS = (*MessageStatus.values, "total", WAITING)

# Why count after pagination: annotating the mailing queryset with one count subquery per status
# (plus a total, which Django built by inlining those subqueries again, so every row was counted
# twice) made PostgreSQL evaluate the subqueries for every row the OFFSET skips as well. With
# 1,000,000 messages across 1,000 mailings, page 7 of 50 took ~80 ms of SQL and deeper pages grew
# linearly. Now the OFFSET skips plain mailing rows only, and the messages counted are those of the
# page's mailings, in one query grouped on the (mailing, status) index.


def message_counts_by_mailing(
    mailing_ids: Iterable[int], *, with_window: Iterable[int] = (), now: datetime | None = None
) -> dict[int, dict[str, int]]:
    """Messages of each given mailing by status value (every status present, 0 when none) plus
    `total`, and `waiting_for_window` for those in `with_window` (the mailings with a local window;
    0 for the others): one query whatever the number of mailings, two when some have a window, none
    when there are no ids.
    """
    ids = list(dict.fromkeys(mailing_ids))
    if not ids:
        return {}
    counts = {mailing_id: dict.fromkeys(MessageStatus.values, 0) for mailing_id in ids}
    grouped = (
        Message.objects.filter(mailing_id__in=ids)
        .order_by()
        .values_list("mailing_id", "status")
        .annotate(n=Count("*"))
    )
    for mailing_id, status, number in grouped:
        counts[mailing_id][status] = number
    for by_status in counts.values():
        by_status["total"] = sum(by_status.values())
        by_status[WAITING] = 0
    windowed = [mailing_id for mailing_id in dict.fromkeys(with_window) if mailing_id in counts]
    if windowed:
        waiting = (
            Message.objects.filter(
                mailing_id__in=windowed,
                status=MessageStatus.PENDING,
                next_attempt_at__gt=now or timezone.now(),
                last_error=WAITING_FOR_WINDOW,
            )
            .order_by()
            .values_list("mailing_id")
            .annotate(n=Count("*"))
        )
        for mailing_id, number in waiting:
            counts[mailing_id][WAITING] = number
    return counts


def attach_message_counts(mailings: Iterable[Mailing]) -> list[Mailing]:
    """Sets `message_counts` (as `message_counts_by_mailing` gives them) on each mailing.

    One query for the whole list (two when some mailing has a local window). A queryset given here
    is evaluated and keeps the objects in its result cache, so iterating it again yields the
    mailings with their counts.
    """
    mailings = list(mailings)
    counts = message_counts_by_mailing(
        [mailing.pk for mailing in mailings],
        with_window=[mailing.pk for mailing in mailings if mailing.local_window is not None],
    )
    for mailing in mailings:
        mailing.message_counts = counts[mailing.pk]
    return mailings


def audience_zones_missing_the_window(mailing: Mailing, *, now: datetime) -> tuple[list[str], list[str]]:
    """The timezones of the clients the mailing would go to now, and those of them in which its
    local window never opens between its start (or now, if later) and its end.

    Per timezone group: one DISTINCT query, then the window rules once per zone.
    """
    window = mailing.local_window
    zones = sorted(mailing.recipients().order_by().values_list("timezone", flat=True).distinct())
    if window is None:
        return zones, []
    start = max(mailing.start_at, now)
    return zones, [zone for zone in zones if not window.opens_between(zone, start, mailing.end_at)]
