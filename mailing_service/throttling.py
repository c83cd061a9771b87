"""API rate limits, counted in the configured cache (shared by every web process when it is Redis).

Each request is counted per user (all methods, and writes again on their own tighter rate) and per
client IP; a view or action may add a scope of its own with `throttle_scope` ("test_send",
"client_import"). Requests over a rate get 429 with Retry-After. Wrong tokens are counted per IP
before any lookup, so guessing tokens is slowed down as well (accounts.authentication).
Rates: API_THROTTLE_* in settings (.env.example).
"""

from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle


class _SettingsRate:
    """Reads the rate when asked, not at import as DRF does, so that a settings change takes effect.
    A scope without a rate (or an empty one) is not limited."""

    def get_rate(self):
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or None


class UserRateThrottle(_SettingsRate, SimpleRateThrottle):
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


class IpRateThrottle(_SettingsRate, SimpleRateThrottle):
    """Every request from one client IP (X-Forwarded-For counted per NUM_PROXIES), with or without
    credentials."""

    scope = "ip"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ActionRateThrottle(_SettingsRate, ScopedRateThrottle):
    """A view's or an action's own `throttle_scope`, per user (per IP without credentials)."""


class FailedAuthThrottle(_SettingsRate, SimpleRateThrottle):
    """Failed token authentications per client IP: once over the rate, every token from that IP is
    refused with 429 until the oldest failure leaves the window."""

    scope = "failed_auth"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}

    def seconds_blocked(self, request) -> float | None:
        """The wait before this IP may try a token again; None when it may now. Counts nothing."""
        if self.rate is None:
            return None
        self.key = self.get_cache_key(request, None)
        self.now = self.timer()
        self.history = [
            moment for moment in self.cache.get(self.key, []) if moment > self.now - self.duration
        ]
        return self.wait() if len(self.history) >= self.num_requests else None

    def record_failure(self, request) -> None:
        if self.rate is not None:
            self.seconds_blocked(request)  # loads the current window
            self.history.insert(0, self.now)
            self.cache.set(self.key, self.history, self.duration)
