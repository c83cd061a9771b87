from rest_framework import serializers

from clients.models import OPERATOR_CODE_PATTERN
from mailing_service.api import FlatListField, StrictModelSerializer

from .models import Provider, ProviderWeightChange


def _operator_codes(help_text: str) -> FlatListField:
    return FlatListField(
        child=serializers.RegexField(
            OPERATOR_CODE_PATTERN, error_messages={"invalid": "Enter a 3-digit mobile operator code."}
        ),
        required=False,
        max_length=1000,
        help_text=help_text,
    )


class ProviderSerializer(StrictModelSerializer):
    """An SMS provider. Its token is never sent or shown: `credentials_env` names the environment
    variable that holds it in the workers."""

    operators_only = _operator_codes("Operator codes it takes; empty: every code it does not exclude.")
    operators_excluded = _operator_codes("Operator codes it never takes.")

    class Meta:
        model = Provider
        fields = [
            "id",
            "name",
            "transport",
            "url",
            "credentials_env",
            "weight",
            "rate_limit",
            "operators_only",
            "operators_excluded",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        def codes(field: str) -> list[str]:
            return attrs.get(field, getattr(self.instance, field, []) if self.instance else [])

        errors = {}
        for field in ("operators_only", "operators_excluded"):
            if len(set(codes(field))) != len(codes(field)):
                errors[field] = ["An operator code is listed twice."]
        if both := set(codes("operators_only")) & set(codes("operators_excluded")):
            errors["operators_excluded"] = [f"Listed in operators_only too: {', '.join(sorted(both))}."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ProviderWeightChangeSerializer(serializers.ModelSerializer):
    class Meta:
        model = ProviderWeightChange
        fields = ["provider", "at", "weight_from", "weight_to", "reason", "holder"]
