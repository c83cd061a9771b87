"""API rate limits, counted in the configured cache (shared by every web process when it is Redis).

Each request is counted per user (all methods, and writes again on their own tighter rate) and per
client IP; a view or action may add a scope of its own with `throttle_scope` ("test_send",
"client_import"). Requests over a rate get 429 with Retry-After. Wrong tokens are counted per IP
before any lookup, so guessing tokens is slowed down as well (accounts.authentication).
Rates: API_THROTTLE_* in settings (.env.example).

A rate "N/period" is counted in fixed windows of one period, with the cache's atomic add and incr:
requests arriving together are each counted, where a history read and written back (DRF's way)
keeps only one of them. Each counter's windows start at an offset of its own, so that not every
client's count restarts at once. Across a window's end up to twice the rate can pass; these limits
stop floods and guessing, and accept that.

When the cache does not answer, the limits let requests through uncounted (fail open): the API
stays up without its limits rather than going down with its cache. Logged at most once a minute
per process and counted in `sms_rate_limit_uncounted_total`; after a failure the cache is left
alone for CACHE_RETRY_SECONDS, so that a cache that hangs does not hold every request for its
timeout.
"""

import logging
import math
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache as default_cache
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle

from ops.metrics import RATE_LIMIT_UNCOUNTED

log = logging.getLogger(__name__)

# Short enough that the limits hold again within seconds of the cache coming back; long enough that
# a cache that times out costs one request its timeout every few seconds, not every request.
CACHE_RETRY_SECONDS = 5.0
# One warning a minute per process says the limits are off without flooding the log.
OUTAGE_LOG_INTERVAL = 60.0

T = TypeVar("T")


class _CacheOutage:
    """This process's view of the cache: whether to skip it for now, and when it last said so."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.skip_until = -math.inf
        self.logged_at = -math.inf

    def ask(self, scope: str, call: Callable[[], T]) -> T | None:
        """`call`'s answer, or None (counted, and logged once a minute) when the cache fails."""
        now = self.clock()
        if now >= self.skip_until:
            try:
                return call()
            except Exception as error:  # each cache backend raises its own errors
                self.skip_until = now + CACHE_RETRY_SECONDS
                if now - self.logged_at >= OUTAGE_LOG_INTERVAL:
                    self.logged_at = now
                    log.warning("rate limits: the cache did not answer, requests pass uncounted: %r", error)
        RATE_LIMIT_UNCOUNTED.labels(scope).inc()
        return None


cache_outage = _CacheOutage()


class CountedRateThrottle(SimpleRateThrottle):
    """A rate counted in windows (see the module's doc). Reads its rate when asked, not at import as
    DRF does, so that a settings change takes effect; a scope without a rate is not limited."""

    cache = default_cache

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or None

    def allow_request(self, request, view):
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        count = self._counted(key)
        return count is None or count <= self.num_requests

    def wait(self):
        """Whole seconds until the window that refused the request ends (Retry-After), at least 1."""
        return max(math.ceil(self.window_ends_at - self.now), 1)

    def _window_key(self, key: str) -> str:
        # crc32, not hash(): every process must put a counter's windows at the same offset.
        offset = zlib.crc32(key.encode()) % self.duration
        self.now = self.timer()
        index = int((self.now + offset) // self.duration)
        self.window_ends_at = (index + 1) * self.duration - offset
        return f"{key}:{index}"

    def _counted(self, key: str) -> int | None:
        """The count of the current window once this request is added; None if the cache failed."""
        window_key = self._window_key(key)
        # The key outlives its window by a second, so that a late increment still finds it.
        timeout = math.ceil(self.window_ends_at - self.now) + 1

        def increment() -> int:
            for _ in range(2):
                self.cache.add(window_key, 0, timeout)
                try:
                    return self.cache.incr(window_key)
                except ValueError:  # the key expired between add and incr: start it again
                    continue
            raise ValueError(f"{window_key} expired twice while being counted")

        return cache_outage.ask(self.scope, increment)

    def _current_count(self, key: str) -> int | None:
        """The count of the current window, counting nothing; None if the cache failed."""
        window_key = self._window_key(key)
        return cache_outage.ask(self.scope, lambda: self.cache.get(window_key, 0))


class UserRateThrottle(CountedRateThrottle):
    """Every request of one user (by id), whatever the method."""

    scope = "user"

    def get_cache_key(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


class UserWriteRateThrottle(UserRateThrottle):
    """Writes (anything but GET, HEAD, OPTIONS) of one user, on a tighter rate."""

    scope = "user_write"

    def get_cache_key(self, request, view):
        return None if request.method in SAFE_METHODS else super().get_cache_key(request, view)


class IpRateThrottle(CountedRateThrottle):
    """Every request from one client IP (X-Forwarded-For counted per NUM_PROXIES), with or without
    credentials."""

    scope = "ip"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ActionRateThrottle(ScopedRateThrottle, CountedRateThrottle):
    """A view's or an action's own `throttle_scope`, per user (per IP without credentials)."""


class FailedAuthThrottle(IpRateThrottle):
    """Failed token authentications per client IP: once the count reaches the rate, every token from
    that IP is refused with 429 until its window ends. Checking and counting are two steps (a right
    token counts nothing), but the count is atomic: failures sent together each count, and the block
    holds whatever the count has grown to."""

    scope = "failed_auth"

    def seconds_blocked(self, request) -> float | None:
        """The wait before this IP may try a token again; None when it may now. Counts nothing."""
        if self.rate is None:
            return None
        count = self._current_count(self.get_cache_key(request, None))
        return self.wait() if count is not None and count >= self.num_requests else None

    def record_failure(self, request) -> None:
        if self.rate is not None:
            self._counted(self.get_cache_key(request, None))
