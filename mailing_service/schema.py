"""The OpenAPI schema tells the whole truth: every error status an operation can answer is declared,
and request bodies that refuse unknown keys say so with `additionalProperties: false`."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

# Imported by views to describe their own errors (409); it must not import the views' modules: a view
# class decorated with extend_schema needs this module loaded first.
DetailSerializer = inline_serializer("Detail", fields={"detail": serializers.CharField()})

# `{"field": ["message", ...]}` for each wrong field; `detail` when the body as a whole is malformed.
VALIDATION_ERROR = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": {"type": "array", "items": {"type": "string"}},
}


# Django refuses NUL characters in any text it takes (form fields and DRF's CharField alike).
NO_NUL = "^[^\\x00]*$"
# DRF strips a CharField's value before refusing it blank: "\r" is as blank as "". Python's strip
# also takes \x1c-\x1f and \x85, which JSON Schema's \s (ECMA-262's) does not name.
NOT_BLANK = "^[^\\x00]*[^\\s\\x00\\x1c-\\x1f\\x85][^\\x00]*$"


def _detail(description: str) -> OpenApiResponse:
    return OpenApiResponse(DetailSerializer, description=description)


BAD_REQUEST = OpenApiResponse(
    VALIDATION_ERROR,
    description="Bad input: an object naming each wrong field (body or query parameter) with its "
    'messages, e.g. `{"phone": ["This field is required."]}`, or `{"detail": ...}` for a malformed body.',
)
UNAUTHENTICATED = _detail("No credentials, or a token that is unknown, expired or revoked.")
FORBIDDEN = _detail("Your role may not do this (viewers only read), or a session without its CSRF token.")
NOT_FOUND = _detail("No such object, or a page number past the last page.")
TOO_LARGE = _detail("The body is larger than the service accepts (DATA_UPLOAD_MAX_MEMORY_SIZE).")
UNSUPPORTED_MEDIA = _detail("The body is not application/json.")
THROTTLED = _detail("Too many requests: wait the seconds the Retry-After header gives.")


class ApiAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        # Open endpoints (the health checks) answer what they declare.
        if not self.view.authentication_classes:
            return responses
        errors = {"400": BAD_REQUEST, "401": UNAUTHENTICATED, "403": FORBIDDEN, "429": THROTTLED}
        if "{" in self.path or self._is_list_view():
            errors["404"] = NOT_FOUND
        if self.method in ("POST", "PUT", "PATCH"):
            errors |= {"413": TOO_LARGE, "415": UNSUPPORTED_MEDIA}
        for code, response in errors.items():
            if code not in responses:
                responses[code] = self._get_response_for_code(response, code, direction=direction)
        return responses

    def _get_request_body(self, direction="request"):
        body = super()._get_request_body(direction)
        if body and "text/csv" in body.get("content", {}):
            body["required"] = True  # the CSV import reads nothing but its file
        return body

    def _get_filter_parameters(self):
        parameters = super()._get_filter_parameters()
        for parameter in parameters:
            schema = parameter["schema"]
            if schema.get("type") == "string" and not {"enum", "format"} & set(schema):
                schema["minLength"] = 1  # an empty value is refused (mailing_service.filters)
                schema.setdefault("pattern", NO_NUL)
        return parameters

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        # drf-spectacular offers a blank-allowed field's "" as a second `oneOf` branch; a pattern
        # that takes "" itself (a tag's) would match both, which `oneOf` forbids.
        if schema.get("oneOf", [None])[-1] == {"type": "string", "maxLength": 0}:
            schema["anyOf"] = schema.pop("oneOf")
        if schema.get("type") == "string" and not {"enum", "format", "readOnly"} & set(schema):
            refuses_blank = isinstance(field, serializers.CharField) and field.trim_whitespace
            schema.setdefault("pattern", NOT_BLANK if refuses_blank and not field.allow_blank else NO_NUL)

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and getattr(serializer, "refuses_unknown_fields", False):
            schema["additionalProperties"] = False
        return schema
