"""Read-side queries over messages: the statistics of mailings, and the operator console's figures.

Message counts are taken after pagination: the API and the admin first fetch one page of plain
mailings, then `attach_message_counts` sums that page's message tallies (MessageTally, kept by
triggers) in one grouped query, and counts the messages waiting for their local window in one more
when a mailing of the page has a window.

When a message ended: a sent message has `sent_at`; a failed or expired one keeps no end time, so
its `next_attempt_at` stands in (the moment its last attempt was due, at most a retry delay before
it failed; for an expired one, when it was last due before its mailing ended). Every query of
outcomes starts from mailings that ended after the period began, so the (mailing, status) index
narrows the messages read to those mailings.

Figures only: the console draws them (console.charts).
"""

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import chain

from django.conf import settings
from django.db.models import (
    Avg,
    Case,
    Count,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Q,
    Sum,
    When,
)
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone

from clients.models import phones_masked
from mailing_service.exports import rows_by_key
from mailings.models import UNSENT_STATUSES, Mailing, MailingState
from mailings.placeholders import Template

from .models import CAP_ERROR, DELIVERY_TIMED, Message, MessageStatus, MessageTally, WaitingFor
from .sending.store import DeliverySpeed

WAITING = "waiting_for_window"
# A provider accepted these (sent_at is set); delivered and undelivered after its receipt.
ACCEPTED = (MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED)
# The keys of every counts dict here: one per message status, "total", then how many of the pending
# ones wait for their client's local window to open (part of "pending", not added to "total").
MESSAGE_COUNT_KEYS = (*MessageStatus.values, "total", WAITING)
# The extra key of counts taken with `sent_since`, and the window the send rate is measured over.
SENT_SINCE = "sent_since"
PROGRESS_RATE_WINDOW = timedelta(minutes=1)

# Why count after pagination: annotating the mailing queryset with one count subquery per status
# (plus a total, which Django built by inlining those subqueries again, so every row was counted
# twice) made PostgreSQL evaluate the subqueries for every row the OFFSET skips as well, so deeper
# pages grew linearly. Here the OFFSET skips plain mailing rows only, and the counts read are those
# of the page's mailings. Those counts are summed tallies, not counted messages: counting a big
# mailing's messages by status grows with the mailing even on the (mailing, status) index.


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
        sent = Message.objects.filter(mailing_id__in=ids, status__in=ACCEPTED, sent_at__gte=sent_since)
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
        status=MessageStatus.PENDING,
        waiting_for=WaitingFor.WINDOW,
        next_attempt_at__gt=now or timezone.now(),
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


# The acceptances chart covers at most this many minutes, up to the mailing's last acceptance.
ACCEPTANCE_CHART_MINUTES = 60


def acceptances_per_minute(mailing: Mailing) -> list[tuple[datetime, int]]:
    """Accepted messages per minute over the last ACCEPTANCE_CHART_MINUTES of the mailing's sending:
    (minute, number), oldest first, every minute present."""
    sent = Message.objects.filter(mailing=mailing, status__in=ACCEPTED).order_by()
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
    minutes = []
    minute = start
    while minute <= last:
        minutes.append((minute, per_minute.get(minute, 0)))
        minute += timedelta(minutes=1)
    return minutes


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


def left_out(mailing: Mailing) -> list[tuple[str, int]]:
    """Who the mailing does not reach, and why, as (reason, clients or messages): before launch the
    matching clients on the opt-out list now; once launched those the fan-out left out, the messages
    opted out since, and those held or expired by the frequency cap (index reads of this mailing's
    pending and expired messages)."""
    if not mailing.is_launched:
        return [("on the opt-out list", mailing.recipients().opted_out().count())]
    messages = Message.objects.filter(mailing=mailing)
    return [
        ("on the opt-out list at launch", mailing.audience_opted_out or 0),
        ("opted out while it ran", messages.filter(status=MessageStatus.OPTED_OUT).count()),
        (
            "waiting for the frequency cap",
            messages.filter(status=MessageStatus.PENDING, waiting_for=WaitingFor.CAP).count(),
        ),
        (
            "expired under the frequency cap",
            messages.filter(status=MessageStatus.EXPIRED, last_error=CAP_ERROR).count(),
        ),
    ]


def mailing_progress(mailing: Mailing, *, now: datetime) -> dict:
    """Percent done, send rate over the last PROGRESS_RATE_WINDOW and, while running, the estimated finish.

    Reads the `message_counts` attach_message_counts(..., sent_since=now - PROGRESS_RATE_WINDOW) set; one
    query more when some of its messages wait for their local window (`_estimated_finish`).
    """
    counts = mailing.message_counts
    unsent = sum(counts[status] for status in UNSENT_STATUSES)
    total = counts["total"]
    rate = counts[SENT_SINCE] / PROGRESS_RATE_WINDOW.total_seconds()
    running = mailing.state_at(now) == MailingState.RUNNING
    return {
        "percent_done": round(100 * (total - unsent) / total, 1) if total else None,
        "rate_per_second": round(rate, 2),
        "estimated_finish_at": _estimated_finish(mailing, now=now, unsent=unsent, rate=rate)
        if running and unsent
        else None,
    }


def _estimated_finish(mailing: Mailing, *, now: datetime, unsent: int, rate: float) -> datetime | None:
    """When the unsent messages would all be sent at `rate`, and not before the last opening of a
    local window that some of them wait for: those are not due until then, whatever the rate.
    None when the rate is 0 and some unsent message could be sent now (nothing to go by)."""
    waiting = mailing.message_counts[WAITING]
    if not rate and unsent > waiting:
        return None
    at_rate = now + timedelta(seconds=unsent / rate) if rate else now
    if not waiting:
        return at_rate
    last_opening = (
        _waiting_for_window(now).filter(mailing=mailing).aggregate(last=Max("next_attempt_at"))["last"]
    )
    return max(at_rate, last_opening or now)


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


Status = MessageStatus
OUTCOMES = Message.FINAL_STATUSES


def _ended_since(since: datetime):
    """Messages of mailings still running at `since` whose outcome came at or after it."""
    unsent = [status for status in OUTCOMES if status not in ACCEPTED]
    return Message.objects.filter(mailing__end_at__gte=since).filter(
        Q(status__in=ACCEPTED, sent_at__gte=since) | Q(status__in=unsent, next_attempt_at__gte=since)
    )


def _outcome_time():
    return Case(When(status__in=ACCEPTED, then=F("sent_at")), default=F("next_attempt_at"))


def outcome_totals(*, since: datetime) -> dict[str, int]:
    """Messages in each final status (sent, failed, expired, ...) since the moment given (one query)."""
    totals = dict.fromkeys(OUTCOMES, 0)
    totals.update(_ended_since(since).order_by().values_list("status").annotate(n=Count("*")))
    return totals


def outcomes_per_hour(*, now: datetime, hours: int = 24) -> list[tuple[datetime, dict[str, int]]]:
    """Messages reaching each final status per hour over the last `hours` hours: (local hour, numbers
    by status), oldest first, every hour present."""
    first = timezone.localtime(now).replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        _ended_since(first)
        .annotate(hour=TruncHour(_outcome_time()))
        .order_by()
        .values_list("hour", "status")
        .annotate(n=Count("*"))
    )
    per_hour: dict[datetime, dict[str, int]] = {}
    for hour, status, number in rows:
        per_hour.setdefault(hour, {})[status] = number
    hours_shown = (first + timedelta(hours=step) for step in range(hours))
    return [(hour, per_hour.get(hour, {})) for hour in hours_shown]


# --- delivery receipts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceiptFigures:
    """What the receipts of one group of messages (a mailing's, a provider's) said, of the messages
    accepted by a provider that sends receipts."""

    delivered: int
    undelivered: int
    awaiting: int  # sent less than RECEIPT_WAIT ago: its receipt may still come
    no_receipt: int  # sent longer than RECEIPT_WAIT ago, and no receipt came
    delay: float | None  # mean seconds from acceptance to the delivered receipt

    @property
    def delivered_percent(self) -> float | None:
        """Delivered among those whose fate is known or no longer awaited."""
        settled = self.delivered + self.undelivered + self.no_receipt
        return 100 * self.delivered / settled if settled else None


def _receipt_figures(messages, *, group: str, now: datetime) -> dict:
    cutoff = now - timedelta(seconds=settings.RECEIPT_WAIT)
    providers = list(settings.RECEIPT_SECRETS)
    sent = Q(status=Status.SENT)
    rows = (
        messages.filter(provider__in=providers, status__in=ACCEPTED)
        .order_by()
        .values_list(group)
        .annotate(
            delivered=Count("id", filter=Q(status=Status.DELIVERED)),
            undelivered=Count("id", filter=Q(status=Status.UNDELIVERED)),
            awaiting=Count("id", filter=sent & Q(sent_at__gte=cutoff)),
            no_receipt=Count("id", filter=sent & Q(sent_at__lt=cutoff)),
            delay=Avg(
                ExpressionWrapper(F("delivered_at") - F("sent_at"), output_field=DurationField()),
                filter=Q(status=Status.DELIVERED),
            ),
        )
    )
    return {
        key: ReceiptFigures(
            delivered, undelivered, awaiting, lost, None if delay is None else delay.total_seconds()
        )
        for key, delivered, undelivered, awaiting, lost, delay in rows
    }


def receipt_figures_by_mailing(mailing_ids: Iterable[int], *, now: datetime) -> dict[int, ReceiptFigures]:
    """Each mailing's receipt figures (one query; a mailing without receipts is absent). Reads the
    mailing's accepted messages: it grows with the mailing, unlike the status counts."""
    messages = Message.objects.filter(mailing_id__in=list(mailing_ids))
    return _receipt_figures(messages, group="mailing_id", now=now)


def receipt_figures_by_provider(*, since: datetime, now: datetime) -> dict[str, ReceiptFigures]:
    """Each provider's receipt figures over the messages it accepted since `since` (one query)."""
    messages = Message.objects.filter(mailing__end_at__gte=since, sent_at__gte=since)
    return _receipt_figures(messages, group="provider", now=now)


def delivery_speeds(
    *, providers: Iterable[str], now: datetime, slow_after: float, window: float
) -> dict[str, DeliverySpeed]:
    """Each of `providers` that sends delivery receipts (RECEIPT_SECRETS): of its messages sent
    within the last `window` seconds and at least `slow_after` ago that were delivered or still
    await their receipt, how many were delivered more than `slow_after` seconds after their
    acceptance, or not yet. One query, on message_delivery_speed_idx."""
    with_receipts = [name for name in providers if settings.RECEIPT_SECRETS.get(name)]
    slow_after_delta = timedelta(seconds=slow_after)
    late = Q(delivered_at__isnull=True) | Q(delivered_at__gt=F("sent_at") + slow_after_delta)
    rows = (
        Message.objects.filter(
            provider__in=with_receipts,
            status__in=DELIVERY_TIMED,
            sent_at__gte=now - timedelta(seconds=window),
            sent_at__lte=now - slow_after_delta,
        )
        .order_by()
        .values_list("provider")
        # Counting sent_at (never null here) and delivered_at, both in the index, keeps the scan to it.
        .annotate(judged=Count("*"), slow=Count("sent_at", filter=late), delivered=Count("delivered_at"))
    )
    speeds = dict.fromkeys(with_receipts, DeliverySpeed(judged=0, slow=0, delivered=0))
    speeds.update(
        (name, DeliverySpeed(judged=judged, slow=slow, delivered=delivered))
        for name, judged, slow, delivered in rows
    )
    return speeds


# --- scrape-time gauges ------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    pending: int
    due: int
    oldest_due_age: float  # seconds; 0 when nothing is due


def message_backlog(*, now: datetime) -> Backlog:
    """Pending and due messages, from the partial index on pending messages."""
    pending = Message.objects.filter(status=MessageStatus.PENDING).order_by()
    figures = pending.aggregate(
        pending=Count("id"),
        due=Count("id", filter=Q(next_attempt_at__lte=now)),
        oldest=Min("next_attempt_at", filter=Q(next_attempt_at__lte=now)),
    )
    age = (now - figures["oldest"]).total_seconds() if figures["oldest"] else 0.0
    return Backlog(pending=figures["pending"], due=figures["due"], oldest_due_age=max(age, 0.0))


def messages_of_unfinished_mailings(*, now: datetime) -> dict[str, int]:
    """Messages by status (every status present) of the mailings whose end has not come."""
    ids = Mailing.objects.filter(end_at__gt=now).values_list("id", flat=True)
    totals = dict.fromkeys(MessageStatus.values, 0)
    for counts in message_counts_by_mailing(ids).values():
        for status in MessageStatus.values:
            totals[status] += counts[status]
    return totals


def mailings_to_send(*, now: datetime, including: Sequence[int] = ()) -> list[tuple[int, Template, datetime]]:
    """(id, text as a template, end) of every sendable mailing (`Mailing.objects.sendable`) with
    pending messages, and of those in `including` (a sender's mailings with requests in flight)
    that are still sendable."""
    pending = Message.objects.filter(mailing=OuterRef("pk"), status=MessageStatus.PENDING)
    mailings = (
        Mailing.objects.sendable(now)
        .filter(Q(id__in=including) | Exists(pending))
        .order_by("start_at", "id")
        .only("id", "text", "text_is_template", "end_at")
    )
    return [(mailing.pk, mailing.template, mailing.end_at) for mailing in mailings]


# The phone is the recipient as copied at launch: it stays when the client is deleted or renumbered.
_MESSAGE_EXPORT_FIELDS = [
    "id",
    "client_id",
    "phone",
    "status",
    "provider",
    "attempts",
    "last_error",
    "created_at",
    "sent_at",
    "delivered_at",
]
MESSAGE_EXPORT_HEADER = ["message_id", *_MESSAGE_EXPORT_FIELDS[1:]]


def message_export_batches(*, mailing_id: int, phones_in_clear: bool) -> Iterator[list[tuple]]:
    """A mailing's messages as MESSAGE_EXPORT_HEADER says, by client (those of deleted clients
    last), in batches (mailing_service.exports); phones masked unless `phones_in_clear`."""
    messages = Message.objects.filter(mailing_id=mailing_id)
    batches = chain(
        # By client on the (mailing, client) unique index: a range scan per batch.
        rows_by_key(messages.filter(client__isnull=False), _MESSAGE_EXPORT_FIELDS, key="client_id"),
        rows_by_key(messages.filter(client__isnull=True), _MESSAGE_EXPORT_FIELDS, key="id"),
    )
    return batches if phones_in_clear else phones_masked(batches, column=2)
