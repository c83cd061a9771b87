"""The console's queries that join several apps' figures: the provider's health on the dashboard,
and the statistics report."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Count

from mailings.models import Mailing
from messages_app.models import Message, MessageStatus
from messages_app.selectors import (
    ReceiptFigures,
    message_counts_by_mailing,
    receipt_figures_by_mailing,
    receipt_figures_by_provider,
)
from messages_app.services import provider_pauses as provider_pauses_in_force
from ops.logging import mask_phones
from ops.selectors import (
    ATTEMPT_OUTCOMES,
    PROVIDER_ERROR_OUTCOMES,
    PauseSpan,
    provider_attempts,
    provider_pauses,
)
from providers.selectors import provider_weight_history, provider_weights, provider_weights_last_set

HEALTH_PERIOD = timedelta(hours=1)
# The report's commonest errors per mailing.
TOP_ERRORS = 3


def provider_health(*, now: datetime) -> dict:
    """The providers over the last HEALTH_PERIOD, from what ops records: attempts by outcome (kept per
    hour, so the counts start at the top of the hour before) and pauses (breaker or refused token)
    that began in the period (the pauses in force: `providers_overview`). Latency is only in Prometheus
    (sms_provider_request_duration_seconds at /metrics), not here."""
    since = (now - HEALTH_PERIOD).replace(minute=0, second=0, microsecond=0)
    attempts = provider_attempts(since=since, until=now)
    reached = sum(attempts.get(outcome, 0) for outcome in ATTEMPT_OUTCOMES)
    errors = sum(attempts.get(outcome, 0) for outcome in PROVIDER_ERROR_OUTCOMES)
    pauses = provider_pauses(since=now - HEALTH_PERIOD, until=now)
    return {
        "counted_since": since,
        "attempts": [(outcome, attempts.get(outcome, 0)) for outcome in ATTEMPT_OUTCOMES],
        "error_percent": 100 * errors / reached if reached else None,
        "pauses": len(pauses),
        "paused_seconds": sum(span.seconds for span in pauses),
    }


@dataclass
class ProviderRow:
    name: str
    resting_weight: int
    weight: int  # as a sender last set it, the resting weight when none did
    paused_until: datetime | None


def providers_overview(*, now: datetime, history: int = 10) -> dict:
    """Each provider's weights and pause, and the latest weight changes with their reasons."""
    resting = provider_weights()
    last_set = provider_weights_last_set(list(resting))
    pauses = provider_pauses_in_force(now=now)
    return {
        "providers": [
            ProviderRow(
                name,
                weight,
                last_set[name].weight_to if name in last_set else weight,
                pauses.get(name),
            )
            for name, weight in resting.items()
        ],
        "weight_changes": provider_weight_history(limit=history),
    }


# --- the statistics report ---------------------------------------------------------------------


@dataclass
class MailingSummary:
    id: int
    text: str
    start_at: datetime
    end_at: datetime
    counts: dict[str, int]
    top_errors: list[tuple[str, int]] = field(default_factory=list)
    receipts: ReceiptFigures | None = None  # None: its messages went to providers without receipts

    @property
    def by_status(self) -> list[tuple[str, int]]:
        return [(status, self.counts[status]) for status in MessageStatus.values]

    @property
    def done(self) -> int:
        return sum(self.counts[status] for status in Message.FINAL_STATUSES)

    @property
    def percent_done(self) -> float:
        return 100.0 * self.done / self.counts["total"] if self.counts["total"] else 100.0


@dataclass
class StatsReport:
    since: datetime
    until: datetime
    mailings: list[MailingSummary]
    running: list[MailingSummary]
    totals: dict[str, int]
    attempts: dict[str, int]
    pauses: list[PauseSpan]
    receipts: dict[str, ReceiptFigures]  # by provider, of the messages accepted in the period

    @property
    def totals_by_status(self) -> list[tuple[str, int]]:
        return [(status, self.totals[status]) for status in MessageStatus.values]

    @property
    def provider_attempts(self) -> int:
        return sum(self.attempts.get(outcome, 0) for outcome in ATTEMPT_OUTCOMES)

    @property
    def provider_errors(self) -> int:
        return sum(self.attempts.get(outcome, 0) for outcome in PROVIDER_ERROR_OUTCOMES)

    @property
    def provider_error_percent(self) -> float:
        return 100.0 * self.provider_errors / self.provider_attempts if self.provider_attempts else 0.0

    @property
    def paused_seconds(self) -> float:
        return sum(span.seconds for span in self.pauses)


def stats_report(*, since: datetime, until: datetime) -> StatsReport:
    """Mailings whose window overlaps [since, until) and that were launched, with their messages'
    counts now; provider attempts and pauses within the period."""
    mailings = list(
        Mailing.objects.filter(launched_at__isnull=False, start_at__lt=until, end_at__gt=since)
        .order_by("start_at", "id")
        .only("id", "text", "start_at", "end_at")
    )
    counts = message_counts_by_mailing(mailing.id for mailing in mailings)
    errors = _top_errors([mailing.id for mailing in mailings])
    receipts = receipt_figures_by_mailing([mailing.id for mailing in mailings], now=until)
    summaries = [
        MailingSummary(
            id=mailing.id,
            text=mailing.text,
            start_at=mailing.start_at,
            end_at=mailing.end_at,
            counts=counts[mailing.id],
            top_errors=errors.get(mailing.id, []),
            receipts=receipts.get(mailing.id),
        )
        for mailing in mailings
    ]
    totals = dict.fromkeys((*MessageStatus.values, "total"), 0)
    for summary in summaries:
        for key in totals:
            totals[key] += summary.counts[key]
    return StatsReport(
        since=since,
        until=until,
        mailings=summaries,
        running=[s for s in summaries if s.end_at > until and s.percent_done < 100.0],
        totals=totals,
        attempts=provider_attempts(since=since, until=until),
        pauses=provider_pauses(since=since, until=until),
        receipts=receipt_figures_by_provider(since=since, now=until),
    )


def _top_errors(mailing_ids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """The most frequent last errors of each mailing's messages, phones masked (one query)."""
    if not mailing_ids:
        return {}
    grouped = (
        Message.objects.filter(mailing_id__in=mailing_ids)
        .exclude(last_error="")
        .order_by()
        .values_list("mailing_id", "last_error")
        .annotate(n=Count("*"))
    )
    by_mailing = defaultdict(list)
    for mailing_id, error, number in grouped:
        by_mailing[mailing_id].append((mask_phones(error), number))
    return {
        mailing_id: sorted(errors, key=lambda pair: (-pair[1], pair[0]))[:TOP_ERRORS]
        for mailing_id, errors in by_mailing.items()
    }
