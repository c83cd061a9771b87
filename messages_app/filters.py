import re

import django_filters
from django import forms
from drf_spectacular.utils import extend_schema_field

from mailing_service.filters import StrictFilterSet

from .models import Message, MessageStatus


class WholeNumberField(forms.IntegerField):
    """Digits only: Django's IntegerField also takes "1.0" and "0.0", which the schema's integer
    does not."""

    def to_python(self, value):
        if value not in self.empty_values and not re.fullmatch(r"\s*-?[0-9]+\s*", str(value)):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


# Ids are 64-bit in every database we run on: a larger number is a 400, not a query that fails.
ID_MAX = 2**63 - 1


@extend_schema_field({"type": "integer", "format": "int64", "minimum": -ID_MAX, "maximum": ID_MAX})
class IdFilter(django_filters.NumberFilter):
    """Matches a related row by id without loading it: a deleted one gives an empty page, no error."""

    field_class = WholeNumberField

    def __init__(self, *args, **kwargs):
        super().__init__(*args, min_value=-ID_MAX, max_value=ID_MAX, **kwargs)


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
