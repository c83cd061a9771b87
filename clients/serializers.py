from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.roles import VIEW_PHONE
from mailing_service.api import RejectUnknownFieldsMixin, StrictModelSerializer

from .attributes import ATTRIBUTE_VALUE_MAX_LENGTH, ATTRIBUTES_MAX
from .models import Client, client_timezones, validate_attributes, validate_phone


@extend_schema_field(
    {
        "type": "object",
        "maxProperties": ATTRIBUTES_MAX,
        "additionalProperties": {"type": "string", "minLength": 1, "maxLength": ATTRIBUTE_VALUE_MAX_LENGTH},
        "example": {"name": "Anna", "city": "Kazan"},
    }
)
class AttributesField(serializers.JSONField):
    pass


class ClientSerializer(StrictModelSerializer):
    """A recipient of mailings. A request body with a field not listed here is refused with 400."""

    # The schema lists the accepted names, so that callers (and schemathesis) know them.
    timezone = serializers.ChoiceField(
        choices=client_timezones(),
        required=False,
        allow_blank=True,
        help_text="IANA timezone name of a place, such as Europe/Moscow, or UTC; "
        "left out or empty: the service's default client timezone.",
        error_messages={"invalid_choice": "{input!r} is not the IANA name of a place's time zone."},
    )

    attributes = AttributesField(
        required=False,
        validators=[validate_attributes],
        help_text="Personal fields a mailing's text puts in ({name|customer}): an object of at most "
        f"{ATTRIBUTES_MAX} names (a lowercase letter, then up to 31 lowercase letters, digits, _) to "
        f"strings of 1 to {ATTRIBUTE_VALUE_MAX_LENGTH} characters. Sent: replaces the whole set.",
    )

    class Meta:
        model = Client
        fields = ["id", "phone", "operator_code", "tag", "timezone", "attributes", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {
            "phone": {
                "help_text": "11 digits starting with 7, as a string: 7XXXXXXXXXX. Unique: a phone another "
                "client has is a 409.",
                # The unique constraint answers (409 from the view): a duplicate is a conflict with the
                # stored clients, not malformed input.
                "validators": [validate_phone],
                "trimmed_length": True,  # " 79161234567 " pasted with spaces is taken, trimmed
            },
            "operator_code": {
                "required": False,
                "allow_blank": True,
                "help_text": "3 digits. Whenever the phone is set without it (or with an empty one), "
                "it becomes digits 2-4 of the phone.",
            },
        }

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not request.user.has_perm(VIEW_PHONE):
            data["phone"] = instance.masked_phone  # viewers (accounts.roles)
        return data

    def validate_timezone(self, value: str) -> str:
        return value or settings.DEFAULT_CLIENT_TIMEZONE

    def validate(self, attrs):
        phone = attrs.get("phone", getattr(self.instance, "phone", ""))
        phone_set_alone = "phone" in attrs and "operator_code" not in attrs
        if phone_set_alone or attrs.get("operator_code") == "":
            attrs["operator_code"] = Client.operator_code_of(phone)
        return attrs


def csv_too_large() -> str:
    return f"The file is larger than CLIENT_IMPORT_MAX_BYTES ({settings.CLIENT_IMPORT_MAX_BYTES} bytes)."


class CSVFileField(serializers.FileField):
    """An uploaded file, a text form field, or the raw body (CSVParser), as bytes, up to
    CLIENT_IMPORT_MAX_BYTES."""

    default_error_messages = {"invalid": "Send a CSV file."}

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = data.encode()
            if len(data) > settings.CLIENT_IMPORT_MAX_BYTES:
                raise serializers.ValidationError(csv_too_large())
        if isinstance(data, bytes):
            return data
        if not hasattr(data, "read"):
            self.fail("invalid")
        if data.size > settings.CLIENT_IMPORT_MAX_BYTES:
            raise serializers.ValidationError(csv_too_large())
        return data.read()


class ClientImportUploadSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    file = CSVFileField(help_text="CSV with a header row: phone,operator_code,tag,timezone.")


class InvalidRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(help_text="Row number in the file; the header is row 1.")
    errors = serializers.DictField(
        child=serializers.CharField(), help_text="Reason by column (or `row` for the row as a whole)."
    )


class ClientImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    invalid_count = serializers.IntegerField(help_text="Rows skipped.")
    invalid = InvalidRowSerializer(many=True, help_text="The first 1,000 rows skipped, with reasons.")
