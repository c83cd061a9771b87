"""Writes of the providers' data: the history of their weights."""

from datetime import UTC, datetime

from messages_app.sending.store import WeightChange

from .models import ProviderWeightChange


def provider_weight_changes_record(*, changes: list[WeightChange], holder: str) -> None:
    ProviderWeightChange.objects.bulk_create(
        ProviderWeightChange(
            provider=change.provider,
            at=datetime.fromtimestamp(change.at, tz=UTC),
            weight_from=change.weight_from,
            weight_to=change.weight_to,
            reason=change.reason[:255],
            holder=holder[:64],
        )
        for change in changes
    )
