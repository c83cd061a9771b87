"""Query filters shared by the API's lists: strict, so that a mistyped filter is a 400, never a silently
unfiltered list or a 500 from the database."""

from datetime import UTC

import django_filters
from django import forms
from django.db import models
from django_filters.fields import IsoDateTimeField
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

EMPTY_VALUE = "Give a value, or leave the parameter out to not filter on it."


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 moment turned into UTC. PostgreSQL refuses offsets beyond ±15:59 that Python accepts
    (`+16:00` reached the database and failed there), and a moment near year 1 or 9999 can leave
    datetime's range once converted: both are a 400 here."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError("This moment is out of range once converted to UTC.") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class StrictBooleanField(forms.Field):
    """`true` or `false` (also 1/0, True/False); anything else is an error instead of no filter."""

    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_python(self, value):
        if value in (None, ""):
            return None
        try:
            return self.VALUES[str(value).lower()]
        except KeyError:
            raise forms.ValidationError("Enter true or false.") from None


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet that refuses a parameter given with an empty value (`?status=`): django-filter would
    skip it and answer the unfiltered list. Date-time and boolean filters made from model fields are
    the strict ones above."""

    FILTER_DEFAULTS = {
        **django_filters.FilterSet.FILTER_DEFAULTS,
        models.DateTimeField: {"filter_class": UtcIsoDateTimeFilter},
        models.BooleanField: {"filter_class": StrictBooleanFilter},
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for query_filter in self.filters.values():
            if issubclass(query_filter.field_class, forms.CharField):
                # A value is used as given: stripped to nothing, it would be skipped silently.
                query_filter.extra.setdefault("strip", False)

    def is_valid(self):
        for name in self.filters:
            if name in self.data and "" in self.data.getlist(name):
                self.form.add_error(name, EMPTY_VALUE)
        return super().is_valid()


class StrictOrderingFilter(OrderingFilter):
    """`?ordering=` that is empty or names a field the list cannot be ordered on is a 400 (DRF ignores
    it and answers the default order). The schema lists the accepted terms."""

    def get_ordering(self, request, queryset, view):
        if self.ordering_param not in request.query_params:
            return self.get_default_ordering(view)
        terms = [term.strip() for term in request.query_params[self.ordering_param].split(",")]
        valid = self._terms(view)
        invalid = [term for term in terms if term not in valid]
        if invalid:
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Cannot order by {', '.join(map(repr, invalid))}; "
                        f"use one or more of {', '.join(valid)}, comma-separated."
                    ]
                }
            )
        return terms

    def _terms(self, view) -> list[str]:
        names = [name for name, _ in self.get_valid_fields(view.get_queryset(), view)]
        return [term for name in names for term in (name, f"-{name}")]

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.ordering_param,
                "required": False,
                "in": "query",
                "description": "Order by these fields, comma-separated; a leading - for descending.",
                "schema": {
                    "type": "array",
                    "items": {"type": "string", "enum": self._terms(view)},
                    "minItems": 1,
                },
                "style": "form",
                "explode": False,
            }
        ]
