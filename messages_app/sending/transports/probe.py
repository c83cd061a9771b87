"""The probe provider (contract: docs/provider-api.md) over one pooled aiohttp session.

aiohttp rather than requests: the sender keeps hundreds of requests in flight from one
process, which a requests thread pool cannot (docs/decisions/aiohttp-senders-over-per-message-tasks.md;
the bench's baseline phase measures both).
"""

import functools
import json

import aiohttp
from yarl import URL

from ops import metrics

from .answers import network_failure, raise_refusal
from .base import OutgoingMessage, TransportError

RETRYABLE_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


@functools.lru_cache(maxsize=64)
def json_text(text: str) -> bytes:
    """A mailing's text as a JSON string, encoded once for all of its messages."""
    return json.dumps(text).encode()


def classify_answer(status: int, body: bytes, *, retry_after: str | None = None) -> None:
    """Return if the provider accepted the message, raise TransportError saying why not otherwise."""
    if status != 200:
        raise_refusal(status, retry_after=retry_after)
    try:
        answer = json.loads(body)
    except ValueError:
        raise TransportError("answer is not JSON") from None
    code = answer.get("code") if isinstance(answer, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        raise TransportError("answer has no integer code")
    if code != 0:
        raise TransportError(f"rejected by the provider with code {code}", permanent=True)


class ProbeTransport:
    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        connect_timeout: float,
        max_connections: int,
        name: str = "default",
    ):
        self.name = name
        base = URL(base_url)
        if base.raw_query_string or base.raw_fragment:
            raise ValueError(f"the provider's base URL takes no query or fragment: {base_url!r}")
        self._send_url = URL(base_url.rstrip("/") + "/send/")
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        # Connecting only: the caller bounds the whole request (aiohttp's total and read timers
        # beside it cost the sender a tenth of its CPU).
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession  # opened by __aenter__

    async def __aenter__(self) -> "ProbeTransport":
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
        # No cookie jar: the provider's API has no use for one, and it is looked up on every request.
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, cookie_jar=aiohttp.DummyCookieJar()
        )
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._session.close()

    async def send(self, message: OutgoingMessage) -> str:
        # Built by hand, not by json.dumps and URL parsing: both showed in the sender's profile. The
        # base URL is already encoded, and an id is digits.
        body = b'{"id": %d, "phone": %d, "text": %s}' % (
            message.id,
            int(message.phone),
            json_text(message.text),
        )
        url = self._send_url.with_path(f"{self._send_url.raw_path}{message.id}", encoded=True)
        with metrics.ProviderCall() as call:
            try:
                # A redirect is not followed: it would hand the phone and text to whatever host it names.
                async with self._session.post(
                    url, data=body, timeout=self._timeout, allow_redirects=False
                ) as response:
                    status, answer = response.status, await response.read()
                    retry_after = response.headers.get("Retry-After") if status == 429 else None
            except RETRYABLE_ERRORS as exc:
                raise network_failure(exc) from None
            call.status = status
            classify_answer(status, answer, retry_after=retry_after)
        return ""  # the API names a message by our id alone
