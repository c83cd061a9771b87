"""What an HTTP provider's refusal means, the same for every transport: 429 is our pace, 401/403 our
credentials, 400 this message for good, anything else (5xx, a redirect, the unexpected) a retry."""

import math
import time
from email.utils import parsedate_to_datetime

from .base import TransportAuthError, TransportError, TransportThrottled


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None or moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def raise_refusal(status: int, *, retry_after: str | None = None, credentials: str = "token") -> None:
    """Raise the TransportError an answer with this (not accepting) status means; `credentials`
    names what a 401 or 403 refused."""
    if status == 429:
        wait = parse_retry_after(retry_after)
        raise TransportThrottled("throttled by the provider (HTTP 429)", retry_after=wait)
    if status in (401, 403):
        raise TransportAuthError(f"provider refused our {credentials} (HTTP {status})")
    if status == 400:
        raise TransportError("provider rejected the request as invalid (HTTP 400)", permanent=True)
    # 5xx, a redirect (not followed) and anything unexpected: the provider may take it later,
    # so never drop the message.
    raise TransportError(f"HTTP {status}")


def network_failure(error: BaseException, *, secret_url: str | None = None) -> TransportError:
    """A request that got no answer (refused, reset, timed out): tried again later. With
    `secret_url` (a URL whose query holds credentials or a phone) the error's own text, which may
    quote the whole URL, is left out for the URL without its query."""
    if secret_url is not None:
        return TransportError(f"{type(error).__name__} ({secret_url})")
    return TransportError(f"{type(error).__name__}: {error}".rstrip(": ")[:200])
