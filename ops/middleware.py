import logging
import re
import time
import uuid

from django.conf import settings

from . import metrics
from .logging import log_context

log = logging.getLogger(__name__)

# An incoming X-Request-ID is kept when it looks like an id (a proxy's or the caller's), so that one
# request can be followed across services; anything else is replaced by a fresh one.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
# Routes polled by machines: counted in metrics, logged at DEBUG only, so idle logs stay quiet.
QUIET_ROUTES = frozenset({"metrics", "health/", "health/live", "health/ready"})
UNMATCHED = "<unmatched>"
# Any token is a valid HTTP method to Django (answered 405): a label per method would let any caller
# add series to every scrape.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def is_static(request) -> bool:
    """A static file (WhiteNoise answers it before any URL is resolved) or the icon a browser asks
    for: a page loads several, so at INFO they would bury the requests people make."""
    return request.path.startswith(settings.STATIC_URL) or request.path == "/favicon.ico"


def route_of(request) -> str:
    """The URL pattern that answered (`api/v1/mailings/<pk>/`), never the path: bounded labels."""
    match = getattr(request, "resolver_match", None)
    if match is None or not match.route:
        return UNMATCHED
    return re.sub(r"\(\?P<(\w+)>[^)]*\)", r"<\1>", match.route).replace("^", "").replace("$", "")


def user_of(request) -> str | None:
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else None


class RequestLogMiddleware:
    """Gives every request an id (returned as X-Request-ID, carried by every log line of the request),
    then logs it once with user, method, route, status and duration, and counts it in metrics.

    First in MIDDLEWARE, so that the duration covers the whole stack. The query string is not logged:
    admin searches put phones there.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if SANE_REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        started = time.perf_counter()
        with log_context(request_id=request_id):
            response = self.get_response(request)
            duration = time.perf_counter() - started
            route = route_of(request)
            method = request.method if request.method in KNOWN_METHODS else "other"
            metrics.HTTP_REQUESTS.labels(method, route, str(response.status_code)).inc()
            metrics.HTTP_REQUEST_SECONDS.labels(method, route).observe(duration)
            if response.status_code >= 500:
                level = logging.ERROR
            elif route in QUIET_ROUTES or (is_static(request) and response.status_code < 400):
                level = logging.DEBUG  # a missing static file is still worth an INFO line
            else:
                level = logging.INFO
            log.log(
                level,
                "%s %s (%s) %s %.1f ms",
                request.method,
                request.path,
                route,
                response.status_code,
                duration * 1000,
                extra={
                    "user": user_of(request),
                    "method": request.method,
                    "route": route,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(duration * 1000, 1),
                },
            )
        response["X-Request-ID"] = request_id
        return response
