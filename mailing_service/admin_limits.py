"""The API's rate limits (REST_FRAMEWORK's throttle classes and rates) applied to the admin's and the
console's actions: a test send or a pause counts against the same limits, under the same keys,
whether it is asked through the API or a button."""

import math
from types import SimpleNamespace

from django.http import HttpRequest
from rest_framework.settings import api_settings


def seconds_throttled(request: HttpRequest, *, scope: str | None = None) -> int | None:
    """None when the request is within every limit (and is counted in each, as the API counts it);
    else the whole seconds to wait. `scope` is the action's own rate, as an API view's throttle_scope."""
    view = SimpleNamespace(throttle_scope=scope)
    throttles = [throttle_class() for throttle_class in api_settings.DEFAULT_THROTTLE_CLASSES]
    waits = [throttle.wait() for throttle in throttles if not throttle.allow_request(request, view)]
    if not waits:
        return None
    return math.ceil(max((wait for wait in waits if wait is not None), default=1))
