import django_filters

from .models import Mailing


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

    class Meta:
        model = Mailing
        fields = ["filter_tag", "filter_operator_code"]
