"""Pieces shared by the apps' REST APIs: strict serializers and the 409 error."""

from collections.abc import Mapping

from django.db import models
from drf_spectacular.utils import inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import APIException

# Sent by HTML forms (the browsable API) beside the fields; never a typo of the caller.
_FORM_KEYS = frozenset({"csrfmiddlewaretoken"})


class RejectUnknownFieldsMixin:
    """Answers 400 naming every body field the serializer does not declare.

    DRF drops unknown keys silently, so a typo such as `fliter_tag` would create a mailing
    to every client instead of failing. Declared read-only fields (`id`, `created_at`...) are
    still accepted and ignored, so that a representation read with GET can be sent back.
    """

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
    (a phone sent as a number, an operator code that lost its leading zero)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


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


DetailSerializer = inline_serializer("Detail", fields={"detail": serializers.CharField()})
