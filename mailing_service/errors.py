"""How the API answers what it cannot take: always JSON under /api/, never a 500 for bad input.

- a body nested too deep for Python's JSON parser (RecursionError) or not JSON: 400;
- a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE: 413, read no further than that;
- anything Django itself answers under /api/ (an unknown route, a bad Host, an unexpected error):
  the same `{"detail": ...}` shape as DRF's errors instead of an HTML page.
"""

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import JsonResponse
from django.views import defaults
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json
from rest_framework.views import exception_handler

API_PREFIX = "/api/"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"

    def __init__(self):
        super().__init__(f"The body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.")


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser reads the whole stream whatever its size and lets RecursionError through."""

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = stream.read(limit + 1) if stream is not None else b""
        if len(body) > limit:
            raise PayloadTooLarge()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        try:
            return json.loads(body.decode(encoding), parse_constant=json.strict_constant)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deep.") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def api_exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    return exception_handler(exc, context)


def _detail(status_code: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status_code)


def bad_request(request, exception):
    if request.path.startswith(API_PREFIX):
        return _detail(400, "Bad request.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception):
    if request.path.startswith(API_PREFIX):
        return _detail(403, "You do not have permission to perform this action.")
    return defaults.permission_denied(request, exception)


def page_not_found(request, exception):
    if request.path.startswith(API_PREFIX):
        return _detail(404, "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request):
    if request.path.startswith(API_PREFIX):
        return _detail(500, "Server error.")
    return defaults.server_error(request)
