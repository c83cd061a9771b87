"""Reads of the providers' data."""

from django.db.models import Count, Max, QuerySet, Subquery

from .models import SETTINGS_PROVIDER, Provider, ProviderWeightChange


def providers_enabled() -> QuerySet[Provider]:
    return Provider.objects.filter(enabled=True).order_by("name")


def provider_weights() -> dict[str, int]:
    """The resting weight of each provider messages go out through, by name."""
    weights = dict(providers_enabled().values_list("name", "weight"))
    return weights or {SETTINGS_PROVIDER: 100}


def provider_weights_last_set(names: list[str]) -> dict[str, ProviderWeightChange]:
    """Each provider's latest weight change, where it has one."""
    last_ids = (
        ProviderWeightChange.objects.filter(provider__in=names)
        .values("provider")
        .annotate(last=Max("id"))
        .values("last")
    )
    return {
        change.provider: change for change in ProviderWeightChange.objects.filter(id__in=Subquery(last_ids))
    }


def providers_version() -> str:
    """Changes whenever a provider is added, changed or deleted: senders then start anew."""
    seen = Provider.objects.aggregate(count=Count("id"), last=Max("updated_at"))
    return f"{seen['count']}:{seen['last']}"


def provider_weight_history(*, limit: int = 50) -> list[ProviderWeightChange]:
    """The latest weight changes, newest first."""
    return list(ProviderWeightChange.objects.order_by("-at", "-id")[:limit])
