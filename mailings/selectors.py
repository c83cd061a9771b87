"""Read-side queries over mailings, shared by the API and the admin.

Message counts are taken after pagination: the API and the admin first fetch one page of plain
mailings, then `attach_message_counts` counts that page's messages in one grouped query.
"""

from collections.abc import Iterable
from datetime import datetime

from django.db.models import Count

from messages_app.models import Message, MessageStatus

from .models import Mailing

# The keys of every counts dict here: one per message status, then "total".
MESSAGE_COUNT_KEYS = (*MessageStatus.values, "total")

# Why count after pagination: annotating the mailing queryset with one count subquery per status
# (plus a total, which Django built by inlining those subqueries again, so every row was counted
# twice) made PostgreSQL evaluate the subqueries for every row the OFFSET skips as well. With
# 1,000,000 messages across 1,000 mailings, page 7 of 50 took ~80 ms of SQL and deeper pages grew
# linearly. Now the OFFSET skips plain mailing rows only, and the messages counted are those of the
# page's mailings, in one query grouped on the (mailing, status) index.


def message_counts_by_mailing(mailing_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Messages of each given mailing by status value (every status present, 0 when none) plus
    `total`: one query whatever the number of mailings, none when there are no ids.
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
    return counts


def attach_message_counts(mailings: Iterable[Mailing]) -> list[Mailing]:
    """Sets `message_counts` (as `message_counts_by_mailing` gives them) on each mailing.

    One query for the whole list. A queryset given here is evaluated and keeps the objects in its
    result cache, so iterating it again yields the mailings with their counts.
    """
    mailings = list(mailings)
    counts = message_counts_by_mailing(mailing.pk for mailing in mailings)
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
