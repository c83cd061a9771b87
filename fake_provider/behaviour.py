"""How the fake provider behaves: its configuration (latency, jitter, error and garbage shares, hangs,
rejections, the account's rate limit) and the draws that apply it to each send."""

import dataclasses
import math
import random
from collections.abc import Mapping
from typing import Any

# Kannel's report types (dlr-mask bits) the fake posts.
KANNEL_DELIVERED, KANNEL_UNDELIVERED, KANNEL_ACCEPTED = 1, 2, 8

# Alternated: a proxy's error page, then JSON without "code".
GARBAGE_ANSWERS = (
    (b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html"),
    (b'{"status": "queued"}', "application/json"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    """What the fake does to each send; replaced as a whole on every change."""

    token: str
    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    garbage_rate: float = 0.0
    hang_rate: float = 0.0
    reject_rate: float = 0.0
    hang_seconds: float = 3600.0
    # Sends per second allowed across all connections, 429 above (0: no limit). A token bucket
    # holding `rate_limit_burst` sends (0: a tenth of a second's worth, at least one).
    rate_limit: float = 0.0
    rate_limit_burst: float = 0.0
    # Seconds announced in Retry-After on a 429, rounded up (0: no header).
    retry_after: float = 0.0
    # Delivery reports of the Kannel-shaped API (/cgi-bin/sendsms), posted to each message's dlr-url:
    # the share not delivered to the phone, lost (never posted), posted twice, and posted out of
    # order (the SMSC's acceptance, 8, after the final report instead of before it), each after a
    # delay uniform in receipt_delay +/- receipt_delay_jitter seconds.
    receipt_undelivered_rate: float = 0.0
    receipt_lost_rate: float = 0.0
    receipt_duplicate_rate: float = 0.0
    receipt_reorder_rate: float = 0.0
    receipt_delay: float = 0.0
    receipt_delay_jitter: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not self.token or self.token != self.token.strip():
            raise ValueError("token must be a non-empty string without surrounding spaces")
        for field in dataclasses.fields(self):
            if field.name == "token":
                continue
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{field.name} must be a finite number")
            if field.name.endswith("_rate") and not 0 <= value <= 1:
                raise ValueError(f"{field.name} must be between 0 and 1")
            if value < 0:
                raise ValueError(f"{field.name} must not be negative")
            object.__setattr__(self, field.name, float(value))

    @property
    def authorization(self) -> str:
        return f"Bearer {self.token}"

    def updated(self, changes: Mapping[str, Any]) -> "Config":
        unknown = set(changes) - {field.name for field in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **changes)

    def public(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"token": "<hidden>"}

    @property
    def bucket_size(self) -> float:
        return self.rate_limit_burst or max(1.0, self.rate_limit / 10)


class RateLimit:
    """The provider's account limit: a token bucket over every connection, on the monotonic clock."""

    def __init__(self) -> None:
        self._tokens: float | None = None  # None: full
        self._at = 0.0

    def allows(self, config: Config, now: float) -> bool:
        if not config.rate_limit:
            return True
        size = config.bucket_size
        tokens = size if self._tokens is None else self._tokens
        tokens = min(size, tokens + (now - self._at) * config.rate_limit)
        self._at = now
        allowed = tokens >= 1
        self._tokens = tokens - 1 if allowed else tokens
        return allowed


class Behaviour:
    """The configuration in force and what it decides for each send: its outcome, its delay, whether
    the rate limit lets it through, and which error status or garbage answer comes next."""

    def __init__(self, config: Config, *, seed: int | None = None) -> None:
        self.config = config
        self._rng = random.Random(seed)
        self._rate_limit = RateLimit()
        self._errors_answered = 0
        self._garbage_answered = 0

    def configure(self, changes: Mapping[str, Any]) -> None:
        """Apply a partial update atomically; ValueError (and no change at all) on a bad value."""
        changes = dict(changes)
        reseed = "seed" in changes
        seed = changes.pop("seed", None)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be an integer or null")
        config = self.config.updated(changes)
        if (config.rate_limit, config.bucket_size) != (self.config.rate_limit, self.config.bucket_size):
            self._rate_limit = RateLimit()
        self.config = config
        if reseed:
            self._rng.seed(seed)
            self._errors_answered = self._garbage_answered = 0

    def allows(self, config: Config, now: float) -> bool:
        return self._rate_limit.allows(config, now)

    def draw_outcome(self, config: Config) -> str:
        # One draw per option on every request, so a seed gives the same sequence whatever the rates.
        rng = self._rng
        hang = rng.random() < config.hang_rate
        error = rng.random() < config.error_rate
        garbage = rng.random() < config.garbage_rate
        reject = rng.random() < config.reject_rate
        if hang:
            return "hang"
        if error:
            return "error_5xx"
        if garbage:
            return "garbage"
        if reject:
            return "rejected"
        return "ok"

    def draw_receipts(self, config: Config) -> list[tuple[float, int]]:
        """The delivery reports of one accepted message: (seconds from now, Kannel report type),
        in the order they are posted; none when it is lost."""
        rng = self._rng
        lost = rng.random() < config.receipt_lost_rate
        undelivered = rng.random() < config.receipt_undelivered_rate
        duplicated = rng.random() < config.receipt_duplicate_rate
        reordered = rng.random() < config.receipt_reorder_rate
        delay = config.receipt_delay
        if config.receipt_delay_jitter:
            jitter = config.receipt_delay_jitter
            delay = max(0.0, delay + rng.uniform(-jitter, jitter))
        if lost:
            return []
        final = KANNEL_UNDELIVERED if undelivered else KANNEL_DELIVERED
        reports = [(0.0, KANNEL_ACCEPTED), (delay, final)]
        if reordered:
            reports = [(delay, final), (delay, KANNEL_ACCEPTED)]
        if duplicated:
            reports.append((delay, final))
        return reports

    def delay(self, config: Config) -> float:
        delay = config.latency
        if config.latency_jitter:
            delay = max(0.0, delay + self._rng.uniform(-config.latency_jitter, config.latency_jitter))
        return delay

    def error_status(self) -> int:
        status = (503, 500)[self._errors_answered % 2]
        self._errors_answered += 1
        return status

    def garbage(self) -> tuple[bytes, str]:
        answer = GARBAGE_ANSWERS[self._garbage_answered % 2]
        self._garbage_answered += 1
        return answer
