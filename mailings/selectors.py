"""Read-side queries over mailings, shared by the API and the admin.

Message counts are taken after pagination: the API and the admin first fetch one page of plain
mailings, then `attach_message_counts` sums that page's message tallies (messages_app.models.
MessageTally, kept by triggers) in one grouped query, and counts the messages waiting for their
local window in one more when a mailing of the page has a window.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count, Max, Sum
from django.db.models.functions import TruncMinute
from django.utils import timezone

from clients.models import Client
from messages_app.models import WAITING_FOR_WINDOW, Message, MessageStatus, MessageTally

from .charts import Bucket
from .models import UNSENT_STATUSES, Mailing, MailingState, describe_audience

AUDIENCE_SAMPLE_SIZE = 5

WAITING = "waiting_for_window"
# The keys of every counts dict here: one per message status, "total", then how many of the pending
# ones wait for their client's local window to open (part of "pending", not added to "total").
MESSAGE_COUNT_KEYS = (*MessageStatus.values, "total", WAITING)
# The extra key of counts taken with `sent_since`, and the window the send rate is measured over.
SENT_SINCE = "sent_since"
PROGRESS_RATE_WINDOW = timedelta(minutes=1)

# Why count after pagination: annotating the mailing queryset with one count subquery per status
# (plus a total, which Django built by inlining those subqueries again, so every row was counted
# twice) made PostgreSQL evaluate the subqueries for every row the OFFSET skips as well. With
# 1,000,000 messages across 1,000 mailings, page 7 of 50 took ~80 ms of SQL and deeper pages grew
# linearly. Now the OFFSET skips plain mailing rows only, and the counts read are those of the
# page's mailings. Those counts are summed tallies, not counted messages: counting one mailing's
# 10,000,000 messages by status took over a second even from the (mailing, status) index.


def message_counts_by_mailing(
    mailing_ids: Iterable[int],
    *,
    sent_since: datetime | None = None,
    with_window: Iterable[int] = (),
    now: datetime | None = None,
) -> dict[int, dict[str, int]]:
    """Messages of each given mailing by status value (every status present, 0 when none) plus
    `total`, and `waiting_for_window` for those in `with_window` (the mailings with a local window;
    0 for the others): one query on the message tallies whatever the number of mailings, one more
    when some have a window, none when there are no ids.

    With `sent_since`, one more query counts under SENT_SINCE the messages sent from then on, on the
    (mailing, status, sent_at) index.
    """
    ids = list(dict.fromkeys(mailing_ids))
    if not ids:
        return {}
    counts = {mailing_id: dict.fromkeys(MessageStatus.values, 0) for mailing_id in ids}
    tallies = MessageTally.objects.filter(mailing_id__in=ids).order_by().values_list("mailing_id", "status")
    for mailing_id, status, number in tallies.annotate(n=Sum("messages")):
        counts[mailing_id][status] = number
    for by_status in counts.values():
        by_status["total"] = sum(by_status.values())
        by_status[WAITING] = 0
    if sent_since is not None:
        sent = Message.objects.filter(mailing_id__in=ids, status=MessageStatus.SENT, sent_at__gte=sent_since)
        recent = dict(sent.order_by().values_list("mailing_id").annotate(n=Count("*")))
        for mailing_id, by_status in counts.items():
            by_status[SENT_SINCE] = recent.get(mailing_id, 0)
    windowed = [mailing_id for mailing_id in dict.fromkeys(with_window) if mailing_id in counts]
    if windowed:
        waiting = _waiting_for_window(now).filter(mailing_id__in=windowed)
        for mailing_id, number in waiting.order_by().values_list("mailing_id").annotate(n=Count("*")):
            counts[mailing_id][WAITING] = number
    return counts


def _waiting_for_window(now: datetime | None = None):
    """Pending messages whose next attempt waits for their client's local window to open."""
    return Message.objects.filter(
        status=MessageStatus.PENDING, last_error=WAITING_FOR_WINDOW, next_attempt_at__gt=now or timezone.now()
    )


def attach_message_counts(
    mailings: Iterable[Mailing], *, sent_since: datetime | None = None
) -> list[Mailing]:
    """Sets `message_counts` (as `message_counts_by_mailing` gives them) on each mailing.

    One query for the whole list, one more with `sent_since`, one more when some mailing has a local
    window. A queryset given here is evaluated and keeps the objects in its result cache, so
    iterating it again yields the mailings with their counts.
    """
    mailings = list(mailings)
    counts = message_counts_by_mailing(
        [mailing.pk for mailing in mailings],
        sent_since=sent_since,
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


# The acceptances chart covers at most this many minutes, up to the mailing's last acceptance.
ACCEPTANCE_CHART_MINUTES = 60


def acceptances_per_minute(mailing: Mailing) -> list[Bucket]:
    """Accepted messages per minute over the last ACCEPTANCE_CHART_MINUTES of the mailing's sending."""
    sent = Message.objects.filter(mailing=mailing, status=MessageStatus.SENT).order_by()
    last = sent.aggregate(last=Max("sent_at"))["last"]
    if last is None:
        return []
    first = last.replace(second=0, microsecond=0) - timedelta(minutes=ACCEPTANCE_CHART_MINUTES - 1)
    per_minute = dict(
        sent.filter(sent_at__gte=first)
        .annotate(minute=TruncMinute("sent_at"))
        .values_list("minute")
        .annotate(n=Count("*"))
    )
    start = min(per_minute, default=first)
    buckets = []
    minute = start
    while minute <= last:
        label = timezone.localtime(minute).strftime("%H:%M")
        buckets.append(Bucket(label, {"sent": per_minute.get(minute, 0)}))
        minute += timedelta(minutes=1)
    return buckets


def top_errors(mailing: Mailing, *, limit: int = 5) -> list[tuple[str, int]]:
    """The commonest last errors of the mailing's failed messages, with how many failed so."""
    return list(
        Message.objects.filter(mailing=mailing, status=MessageStatus.FAILED)
        .order_by()
        .values_list("last_error")
        .annotate(n=Count("*"))
        .order_by("-n", "last_error")[:limit]
    )


def audience_timezones(mailing: Mailing, *, limit: int = 12) -> list[tuple[str, int]]:
    """How the audience spreads over timezones: the messages' clients once launched, else the
    clients the filter matches now. The largest `limit` timezones, then "other" for the rest.
    """
    if mailing.is_launched:
        rows = Message.objects.filter(mailing=mailing, client__isnull=False).values_list("client__timezone")
    else:
        rows = mailing.recipients().values_list("timezone")
    spread = list(rows.order_by().annotate(n=Count("*")).order_by("-n"))
    if len(spread) > limit:
        spread = [*spread[: limit - 1], ("other", sum(n for _, n in spread[limit - 1 :]))]
    return spread


def mailing_progress(mailing: Mailing, *, now: datetime) -> dict:
    """Percent done, send rate over the last PROGRESS_RATE_WINDOW and, while running, the estimated
    finish.

    Reads the `message_counts` that attach_message_counts(..., sent_since=now - PROGRESS_RATE_WINDOW)
    set: no query.
    """
    counts = mailing.message_counts
    unsent = sum(counts[status] for status in UNSENT_STATUSES)
    total = counts["total"]
    rate = counts[SENT_SINCE] / PROGRESS_RATE_WINDOW.total_seconds()
    running = mailing.state_at(now) == MailingState.RUNNING
    return {
        "percent_done": round(100 * (total - unsent) / total, 1) if total else None,
        "rate_per_second": round(rate, 2),
        "estimated_finish_at": now + timedelta(seconds=unsent / rate)
        if running and rate and unsent
        else None,
    }


def message_totals(mailings) -> dict[str, int]:
    """Messages of all these mailings (a queryset) by status and in total: one query on the message
    tallies, one on the messages waiting for their window."""
    totals = dict.fromkeys(MessageStatus.values, 0)
    chosen = mailings.order_by().values("pk")
    tallies = MessageTally.objects.filter(mailing_id__in=chosen).order_by().values_list("status")
    for status, number in tallies.annotate(n=Sum("messages")):
        totals[status] = number
    totals["total"] = sum(totals.values())
    totals[WAITING] = _waiting_for_window().filter(mailing__in=chosen).count()
    return totals


def audience_preview(*, operator_codes: list[str], tags: list[str]) -> dict:
    """How many clients a filter reaches now, with a few of them: two queries on the clients'
    (operator_code, tag) and (tag) indexes. The sample is in no particular order, so that
    PostgreSQL takes the first matching rows it finds rather than sorting them all."""
    clients = Client.objects.matching(operator_codes=operator_codes, tags=tags)
    matched = sorted(set(operator_codes) - {""}), sorted(set(tags) - {""})
    return {
        "audience": describe_audience(operator_codes=matched[0], tags=matched[1]),
        "count": clients.count(),
        "sample": list(clients.order_by()[:AUDIENCE_SAMPLE_SIZE]),
    }
