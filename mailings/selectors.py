"""Read-side queries over mailings, shared by the API and the admin."""

from django.db.models import Count, Q, QuerySet

from messages_app.models import MessageStatus

from .models import Mailing

# Annotation each message count lives under: one per message status, plus the total.
MESSAGE_COUNT_FIELDS: dict[str, str] = {
    **{status: f"messages_{status}" for status in MessageStatus.values},
    "total": "messages_total",
}


def mailings_with_message_counts(queryset: QuerySet[Mailing] | None = None) -> QuerySet[Mailing]:
    """The mailings annotated with `messages_<status>` for every message status and `messages_total`.

    One grouped query whatever the number of mailings; a mailing without messages gets zeros.
    """
    queryset = Mailing.objects.all() if queryset is None else queryset
    by_status = {
        MESSAGE_COUNT_FIELDS[status]: Count("messages", filter=Q(messages__status=status))
        for status in MessageStatus.values
    }
    return queryset.annotate(**by_status, messages_total=Count("messages"))


def mailing_message_counts(*, mailing: Mailing) -> dict[str, int]:
    """Messages of one mailing by status value (every status present) plus `total`: one query."""
    row = mailings_with_message_counts(Mailing.objects.filter(pk=mailing.pk)).values(
        *MESSAGE_COUNT_FIELDS.values()
    )
    counts = row.first() or dict.fromkeys(MESSAGE_COUNT_FIELDS.values(), 0)
    return {key: counts[field] for key, field in MESSAGE_COUNT_FIELDS.items()}
