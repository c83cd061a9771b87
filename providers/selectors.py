"""Reads of the providers' data."""

from django.db.models import Count, Max, QuerySet

from .models import Provider, ProviderWeightChange


def providers_enabled() -> QuerySet[Provider]:
    return Provider.objects.filter(enabled=True).order_by("name")


def providers_version() -> str:
    """Changes whenever a provider is added, changed or deleted: senders then start anew."""
    seen = Provider.objects.aggregate(count=Count("id"), last=Max("updated_at"))
    return f"{seen['count']}:{seen['last']}"


def provider_weight_history(*, limit: int = 50) -> list[ProviderWeightChange]:
    """The latest weight changes, newest first."""
    return list(ProviderWeightChange.objects.order_by("-at", "-id")[:limit])
