import django_filters
from django.utils import timezone

from .models import Mailing, MailingState


class MailingFilter(django_filters.FilterSet):
    launched = django_filters.BooleanFilter(
        field_name="launched_at",
        lookup_expr="isnull",
        exclude=True,
        label="Launched (its messages created): true or false.",
    )
    start_at_after = django_filters.IsoDateTimeFilter(
        field_name="start_at", lookup_expr="gte", label="Starting at or after this moment (ISO 8601)."
    )
    start_at_before = django_filters.IsoDateTimeFilter(
        field_name="start_at", lookup_expr="lt", label="Starting before this moment (ISO 8601)."
    )
    state = django_filters.ChoiceFilter(
        choices=MailingState.choices, method="filter_state", label="In this state now."
    )

    def filter_state(self, queryset, name, value):
        return queryset.in_state(value, timezone.now())

    class Meta:
        model = Mailing
        fields = ["filter_tag", "filter_operator_code"]
