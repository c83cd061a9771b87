"""Kannel's HTTP `sendsms` (smsbox), with delivery reports asked for by `dlr-mask` and posted back by
Kannel to each message's `dlr-url` (`messages_app.sending.receipts`).

Kannel takes `sendsms` as GET only (a form POST is answered "Invalid content-type"), so the account's
password and the phone travel in the query string: no error this transport raises names its URL.
Answers: 202 "0: Accepted for delivery" or "3: Queued for later delivery" take the message; 403 is
our credentials; 400 ("Missing receiver number", "Invalid content-type", ...) this message for good;
anything else is tried again (docs/operations.md#kannel).
"""

import aiohttp
from yarl import URL

from ops import metrics

from ..receipts import KANNEL_DLR_MASK, kannel_dlr_url
from .answers import network_failure, raise_refusal
from .base import OutgoingMessage

RETRYABLE_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)
ACCEPTED_STATUSES = (200, 202)


def classify_answer(status: int) -> None:
    """Return if Kannel took the message, raise TransportError saying why not otherwise."""
    if status in ACCEPTED_STATUSES:
        return
    raise_refusal(status, credentials="sendsms account")


class KannelTransport:
    def __init__(
        self,
        *,
        name: str,
        sendsms_url: str,
        username: str,
        password: str,
        sender: str,
        smsc: str,
        receipt_base_url: str,
        receipt_secret: str,
        connect_timeout: float,
        max_connections: int,
    ):
        self.name = name
        self._url = URL(sendsms_url)
        if self._url.raw_query_string or self._url.raw_fragment:
            raise ValueError(f"Kannel's sendsms URL takes no query or fragment: {sendsms_url!r}")
        self._account = {"username": username, "password": password}
        self._fixed = {"from": sender, "smsc": smsc, "dlr-mask": str(KANNEL_DLR_MASK), "charset": "UTF-8"}
        self._fixed = {key: value for key, value in self._fixed.items() if value}
        self._receipt_base_url = receipt_base_url
        self._receipt_secret = receipt_secret
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession  # opened by __aenter__

    async def __aenter__(self) -> "KannelTransport":
        connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=30)
        self._session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._session.close()

    def query(self, message: OutgoingMessage) -> dict[str, str]:
        dlr_url = kannel_dlr_url(
            base_url=self._receipt_base_url,
            provider=self.name,
            secret=self._receipt_secret,
            message_id=message.id,
        )
        query = {
            **self._account,
            **self._fixed,
            "to": message.phone,
            "text": message.text,
            "dlr-url": dlr_url,
        }
        if not message.text.isascii():
            query["coding"] = "2"  # UCS-2 on the air: GSM's 7-bit alphabet has no Cyrillic
        return query

    async def send(self, message: OutgoingMessage) -> str:
        with metrics.ProviderCall() as call:
            try:
                async with self._session.get(
                    self._url.with_query(self.query(message)), timeout=self._timeout, allow_redirects=False
                ) as response:
                    status = response.status
                    await response.read()  # the connection goes back to the pool for the next
            except RETRYABLE_ERRORS as exc:
                # Some of aiohttp's errors quote the whole URL: its query has the password and phone.
                raise network_failure(exc, secret_url=str(self._url)) from None
            call.status = status
            classify_answer(status)
        # Kannel's answer names no id: its reports find the message by the id in the dlr-url.
        return ""
