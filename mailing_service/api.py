"""Pieces shared by the apps' REST APIs: strict serializers, the 409 error and the API root."""

from collections.abc import Mapping

from django.db import models
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException
from rest_framework.fields import empty
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# Views declaring a 409 describe it with the shared `{"detail": ...}` component.
from .schema import DetailSerializer  # noqa: F401

# Sent by HTML forms (the browsable API) beside the fields; never a typo of the caller.
_FORM_KEYS = frozenset({"csrfmiddlewaretoken"})


class RejectUnknownFieldsMixin:
    """Answers 400 naming every body field the serializer does not declare.

    DRF drops unknown keys silently, so a typo such as `fliter_tag` would create a mailing
    to every client instead of failing. Declared read-only fields (`id`, `created_at`...) are
    still accepted and ignored, so that a representation read with GET can be sent back.
    """

    # Read by mailing_service.schema, which declares `additionalProperties: false` for these bodies.
    refuses_unknown_fields = True

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields) - _FORM_KEYS) if isinstance(data, Mapping) else []
        errors = {name: ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if errors and isinstance(exc.detail, Mapping):
                raise serializers.ValidationError({**exc.detail, **errors}) from exc
            raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


class StrictCharField(serializers.CharField):
    """Takes JSON strings only: DRF's CharField turns numbers into strings, which hides client bugs
    (a phone sent as a number, an operator code that lost its leading zero).

    `max_length` counts the string as sent, whitespace around it included, as the schema's maxLength
    says (DRF would count it after trimming). `trimmed_length=True` counts it after trimming, for a
    field whose surrounding whitespace is a documented convenience (a pasted phone).
    """

    def __init__(self, *, trimmed_length: bool = False, **kwargs):
        self.trimmed_length = trimmed_length
        super().__init__(**kwargs)

    def run_validation(self, data=empty):
        # Here, not in to_internal_value: DRF answers a blank-allowed field's whitespace-only value
        # with "" before that runs.
        if (
            isinstance(data, str)
            and not self.trimmed_length
            and self.max_length is not None
            and len(data) > self.max_length
        ):
            self.fail("max_length", max_length=self.max_length)
        return super().run_validation(data)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class FlatListField(serializers.ListField):
    """A list whose wrong items are reported as messages naming the item ("Item 2: ..."), so that a
    field's errors are a list of strings like every other field's (the 400 schema), not DRF's
    object keyed by index."""

    def run_child_validation(self, data):
        try:
            return super().run_child_validation(data)
        except serializers.ValidationError as error:
            raise serializers.ValidationError(
                [
                    f"Item {index + 1}: {message}"
                    for index, messages in error.detail.items()
                    for message in messages
                ]
            ) from None


class StrictModelSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """ModelSerializer refusing unknown fields and non-string values for text columns."""

    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
    }


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state of the resource."
    default_code = "conflict"


# The collections GET /api/v1/ lists, by URL name; each a list of its own.
API_COLLECTIONS = {
    "clients": "client-list",
    "mailings": "mailing-list",
    "statistics": "mailing-statistics",
    "messages": "message-list",
    "providers": "provider-list",
    "optouts": "optout-list",
}
_ApiRootSerializer = inline_serializer(
    "ApiRoot", fields={name: serializers.URLField() for name in [*API_COLLECTIONS, "schema", "docs"]}
)


class ApiRootView(APIView):
    """Where the API's collections are, for a caller with credentials (the address `make run` prints)."""

    permission_classes = [IsAuthenticated]  # any role: the index is about no model

    @extend_schema(
        summary="The API's collections and documentation", responses=_ApiRootSerializer, tags=["api"]
    )
    def get(self, request):
        names = {**API_COLLECTIONS, "schema": "schema", "docs": "swagger-ui"}
        return Response({key: reverse(name, request=request) for key, name in names.items()})
