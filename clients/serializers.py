import io

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.roles import VIEW_PHONE
from mailing_service.api import (
    FlatListField,
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictModelSerializer,
)

from .attributes import ATTRIBUTE_VALUE_MAX_LENGTH, ATTRIBUTES_MAX
from .models import Client, OptOut, client_timezones, validate_attributes, validate_phone, validate_timezone


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


class TimezoneField(serializers.ChoiceField):
    """The client time zones, listed for the schema and checked by the model's validator, as the
    import and the admin check them (its message quotes a long value cut short)."""

    def to_internal_value(self, data):
        try:
            validate_timezone(str(data))
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None
        return super().to_internal_value(data)


class MaskedPhoneMixin:
    """Viewers (accounts.roles) see the `phone` field masked, as logs and lists show phones."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is not None and not request.user.has_perm(VIEW_PHONE):
            data["phone"] = instance.masked_phone
        return data


class ClientSerializer(MaskedPhoneMixin, StrictModelSerializer):
    """A recipient of mailings. A request body with a field not listed here is refused with 400."""

    # The schema lists the accepted names, so that callers (and schemathesis) know them.
    timezone = TimezoneField(
        choices=client_timezones(),
        required=False,
        help_text="IANA timezone name of a place, such as Europe/Moscow, or UTC; "
        "left out on create: the service's default client timezone.",
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
                "help_text": "3 digits. Empty, or left out on create: digits 2-4 of the phone. A new "
                "phone without it changes it only when it was digits 2-4 of the old phone.",
            },
        }

    def validate(self, attrs):
        phone = attrs.get("phone", getattr(self.instance, "phone", ""))
        asked = attrs.get("operator_code") == ""
        if "operator_code" not in attrs:
            # A ported number's code, set apart from its phone, survives a new phone.
            asked = self.instance is None or ("phone" in attrs and self.instance.operator_code_is_derived)
        if asked:
            attrs["operator_code"] = Client.operator_code_of(phone)
        return attrs


def import_body_too_large(meta) -> str | None:
    """Why an import request is refused before its body is read, from its Content-Length."""
    try:
        length = int(meta.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None  # Django reads no body then
    limit = settings.CLIENT_IMPORT_MAX_BYTES
    if length > limit:
        return f"The body is {length} bytes; CLIENT_IMPORT_MAX_BYTES is {limit}. Split the file."
    return None


class CSVFileField(serializers.FileField):
    """An uploaded file, a text form field, or the raw body (CSVParser), as a binary file; its size
    is bounded by the request's (import_body_too_large)."""

    default_error_messages = {"invalid": "Send a CSV file."}

    def to_internal_value(self, data):
        if isinstance(data, str):
            return io.BytesIO(data.encode())
        if isinstance(data, UploadedFile):
            return data.file
        if not (hasattr(data, "read") and hasattr(data, "seek")):
            self.fail("invalid")
        return data


class ClientImportUploadSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    file = CSVFileField(help_text="CSV with a header row: phone,operator_code,tag,timezone.")


class InvalidRowSerializer(serializers.Serializer):
    row = serializers.IntegerField(
        help_text="Row number in the file (the header is row 1); in a bulk upsert, the item's position in "
        "`clients` (the first is 1)."
    )
    errors = serializers.DictField(
        child=serializers.CharField(), help_text="Reason by column (or `row` for the row as a whole)."
    )


class FieldCountsSerializer(serializers.Serializer):
    operator_code = serializers.IntegerField()
    tag = serializers.IntegerField()
    timezone = serializers.IntegerField()
    attributes = serializers.IntegerField(help_text="Clients whose personal fields (attr_ columns) changed.")


class ClientImportReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField(help_text="Stored clients of which at least one field changed.")
    unchanged = serializers.IntegerField(help_text="Stored clients named as they were: not written.")
    changed = FieldCountsSerializer(help_text="Stored clients changed, by field.")
    invalid_count = serializers.IntegerField(help_text="Rows skipped.")
    invalid = InvalidRowSerializer(many=True, help_text="The first 1,000 rows skipped, with reasons.")


class ClientBulkSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    clients = FlatListField(
        child=serializers.DictField(),
        min_length=1,
        max_length=settings.CLIENT_BULK_MAX_ITEMS,
        help_text="Up to CLIENT_BULK_MAX_ITEMS objects, each naming `phone` and any of `operator_code`, "
        "`tag`, `timezone` and `attr_<name>` (strings; an empty `attr_<name>` removes that personal "
        "field): the fields named change, the others stay.",
    )


class OptOutSerializer(MaskedPhoneMixin, StrictModelSerializer):
    """A phone that receives nothing. Added through the API its source is `api`; a phone already on
    the list keeps its first opt-out (200 with it)."""

    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="Who added it."
    )

    class Meta:
        model = OptOut
        fields = ["id", "phone", "reason", "source", "created_at", "created_by"]
        read_only_fields = ["id", "source", "created_at", "created_by"]
        extra_kwargs = {
            "phone": {
                "help_text": "11 digits starting with 7: 7XXXXXXXXXX. Masked for viewers.",
                "validators": [validate_phone],  # a phone already listed is no error (see the view)
                "trimmed_length": True,
            },
            "reason": {"help_text": "Why, as the subscriber said it or the operator saw it."},
            "source": {"help_text": "api, import, admin, or provider (an inbound STOP)."},
        }


class ReconsentSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    reason = StrictCharField(
        max_length=255,
        help_text="Why the phone may receive mailings again (the subscriber's consent): written to the "
        "audit log with who removed it. Not blank.",
    )


class OptOutImportUploadSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    file = CSVFileField(help_text="CSV with a header row: phone, or phone,reason.")


class OptOutImportReportSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Phones put on the list.")
    already = serializers.IntegerField(help_text="Phones already on it (their opt-out is kept).")
    invalid_count = serializers.IntegerField(help_text="Rows skipped.")
    invalid = InvalidRowSerializer(many=True, help_text="The first 1,000 rows skipped, with reasons.")
