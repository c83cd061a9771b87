"""Read-side aggregates over all messages, for the operator console's dashboard (the provider's
health comes from ops' hourly attempt counts and pause events).

When a message ended: a sent message has `sent_at`; a failed or expired one keeps no end time, so
its `next_attempt_at` stands in (the moment its last attempt was due, at most a retry delay before
it failed; for an expired one, when it was last due before its mailing ended). Every query here
starts from mailings that ended after the period began, so the (mailing, status) index narrows
the messages read to those mailings.
"""

from datetime import datetime, timedelta

from django.db.models import Case, Count, F, Q, When
from django.db.models.functions import TruncHour
from django.utils import timezone

from mailings.charts import Bucket

from .models import Message, MessageStatus

Status = MessageStatus
OUTCOMES = Message.FINAL_STATUSES


def _ended_since(since: datetime):
    """Messages of mailings still running at `since` whose outcome came at or after it."""
    unsent = [status for status in OUTCOMES if status != Status.SENT]
    return Message.objects.filter(mailing__end_at__gte=since).filter(
        Q(status=Status.SENT, sent_at__gte=since) | Q(status__in=unsent, next_attempt_at__gte=since)
    )


def _outcome_time():
    return Case(When(status=Status.SENT, then=F("sent_at")), default=F("next_attempt_at"))


def outcome_totals(*, since: datetime) -> dict[str, int]:
    """Messages in each final status (sent, failed, expired, ...) since the moment given (one query)."""
    totals = dict.fromkeys(OUTCOMES, 0)
    totals.update(_ended_since(since).order_by().values_list("status").annotate(n=Count("*")))
    return totals


def outcomes_per_hour(*, now: datetime, hours: int = 24) -> list[Bucket]:
    """Messages reaching each final status per hour over the last `hours` hours, oldest first."""
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
    return [
        Bucket(f"{hour:%H}:00", per_hour.get(hour, {}))
        for hour in (first + timedelta(hours=step) for step in range(hours))
    ]
