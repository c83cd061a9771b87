"""Read-side queries of operations: the provider's attempts and pauses as ops recorded them."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Sum

from .models import ProviderAttemptsHourly, ProviderPauseEvent

# Outcomes of attempts that reached the provider (deferred and expired ones did not).
ATTEMPT_OUTCOMES = ("sent", "failed", "retry", "unanswered", "unknown")
PROVIDER_ERROR_OUTCOMES = ("failed", "retry", "unanswered")


@dataclass
class PauseSpan:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def provider_attempts(*, since: datetime, until: datetime) -> dict[str, int]:
    """Attempts by outcome in the hours that start within [since, until), hour by hour."""
    first_hour = since.replace(minute=0, second=0, microsecond=0)
    if first_hour < since:
        first_hour += timedelta(hours=1)
    rows = (
        ProviderAttemptsHourly.objects.filter(hour__gte=first_hour, hour__lt=until)
        .values_list("outcome")
        .annotate(total=Sum("count"))
    )
    return dict(rows)


def provider_pauses(*, since: datetime, until: datetime) -> list[PauseSpan]:
    """Pauses that began in the period; overlapping ones (several senders tripping) merged."""
    spans: list[PauseSpan] = []
    pauses = ProviderPauseEvent.objects.filter(started_at__gte=since, started_at__lt=until)
    for pause in pauses.order_by("started_at"):
        if spans and pause.started_at <= spans[-1].end:
            spans[-1].end = max(spans[-1].end, pause.until)
        else:
            spans.append(PauseSpan(pause.started_at, pause.until))
    return spans
