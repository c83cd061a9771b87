import django_filters
from django import forms

from mailing_service.filters import StrictFilterSet

from .models import Message, MessageStatus


class IdFilter(django_filters.NumberFilter):
    """Matches a related row by id without loading it: a deleted one gives an empty page, no error."""

    field_class = forms.IntegerField


class MessageStatusFilter(StrictFilterSet):
    status = django_filters.ChoiceFilter(choices=MessageStatus.choices)

    class Meta:
        model = Message
        fields = ["status"]


class MessageFilter(MessageStatusFilter):
    mailing = IdFilter(field_name="mailing__id", label="Mailing id.")
    client = IdFilter(field_name="client__id", label="Client id.")

    class Meta:
        model = Message
        fields = ["mailing", "client", "status"]
