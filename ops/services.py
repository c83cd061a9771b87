"""Writes of operations: the provider's durable counters."""

from collections.abc import Mapping
from datetime import datetime

from django.db import connection
from django.utils import timezone

from . import metrics
from .models import ProviderAttemptsHourly, ProviderPauseEvent


def provider_attempts_record(*, outcomes: Mapping[str, int], now: datetime) -> None:
    """Counts a batch of written-back results by outcome: in Prometheus, and in the hour's rows (the
    report's error rate). Outside the results' transaction, so that senders do not queue on the
    hour's row while they hold their messages' locks."""
    metrics.attempts_recorded(outcomes)
    hour = now.replace(minute=0, second=0, microsecond=0)
    counts = sorted((str(outcome), number) for outcome, number in outcomes.items() if number)
    if not counts:
        return
    table = connection.ops.quote_name(ProviderAttemptsHourly._meta.db_table)
    moment = connection.ops.adapt_datetimefield_value(hour)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (hour, outcome, count) VALUES "
            + ", ".join(["(%s, %s, %s)"] * len(counts))
            + f" ON CONFLICT (hour, outcome) DO UPDATE SET count = {table}.count + excluded.count",
            [value for outcome, number in counts for value in (moment, outcome, number)],
        )


def provider_pause_record(*, until: datetime, provider: str) -> None:
    ProviderPauseEvent.objects.create(started_at=timezone.now(), until=until, provider=provider)
