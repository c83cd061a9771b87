from mailing_service.filters import StrictBooleanFilter, StrictFilterSet, UtcIsoDateTimeFilter

from .models import Mailing


class MailingFilter(StrictFilterSet):
    launched = StrictBooleanFilter(
        field_name="launched_at",
        lookup_expr="isnull",
        exclude=True,
        label="Launched (its messages created): true or false.",
    )
    start_at_after = UtcIsoDateTimeFilter(
        field_name="start_at", lookup_expr="gte", label="Starting at or after this moment (ISO 8601)."
    )
    start_at_before = UtcIsoDateTimeFilter(
        field_name="start_at", lookup_expr="lt", label="Starting before this moment (ISO 8601)."
    )

    class Meta:
        model = Mailing
        fields = ["filter_tag", "filter_operator_code"]
