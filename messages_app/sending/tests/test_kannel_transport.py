"""The Kannel transport: what goes over the wire to smsbox's sendsms, and what its answers mean.

Against a scripted aiohttp server on 127.0.0.1 that answers as Kannel 1.4.5 does (its status lines
and bodies as Debian's Kannel gives them): real HTTP, real refused connections.
"""

import asyncio
import socket
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messages_app.sending.outcomes import Outcome, ProviderAnswer, fate_of
from messages_app.sending.receipts import parse_kannel
from messages_app.sending.transports.base import OutgoingMessage, TransportError
from messages_app.sending.transports.kannel import KannelTransport

MESSAGE = OutgoingMessage(id=42, phone="79001234567", text="Winter sale & more: 50%")
PASSWORD = "kannel-password"
SECRET = "receipt-secret"


def _transport(url: str, **overrides) -> KannelTransport:
    options = {
        "name": "kannel",
        "sendsms_url": url,
        "username": "mailing",
        "password": PASSWORD,
        "sender": "Shop",
        "smsc": "",
        "receipt_base_url": "https://sms.example",
        "receipt_secret": SECRET,
        "connect_timeout": 1.0,
        "max_connections": 10,
    }
    return KannelTransport(**options | overrides)


def against(status: int, body: str, use, *, seen: list | None = None):
    """Kannel's smsbox answering every sendsms with (status, body); `seen` gets each request's query."""

    async def handler(request):
        if seen is not None:
            seen.append((request.method, request.path, dict(request.query)))
        return web.Response(status=status, text=body, content_type="text/html")

    async def scenario():
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with _transport(str(server.make_url("/cgi-bin/sendsms"))) as transport:
                return await use(transport)
        finally:
            await server.close()

    return asyncio.run(scenario())


async def send_one(transport):
    return await transport.send(MESSAGE)


async def failure_of(transport) -> Exception:
    with pytest.raises(TransportError) as caught:
        await transport.send(MESSAGE)
    return caught.value


def test_the_request_carries_the_account_the_message_and_a_signed_dlr_url():
    seen: list = []

    assert against(202, "0: Accepted for delivery", send_one, seen=seen) == ""

    [(method, path, query)] = seen
    assert (method, path) == ("GET", "/cgi-bin/sendsms")
    dlr_url = query.pop("dlr-url")
    assert query == {
        "username": "mailing",
        "password": PASSWORD,
        "from": "Shop",
        "dlr-mask": "19",  # the final reports: delivered, not delivered, rejected by the SMSC
        "charset": "UTF-8",
        "to": "79001234567",
        "text": MESSAGE.text,
    }
    # Kannel fills in %d and %A, then requests it: the receipt names and proves the message.
    assert dlr_url.startswith("https://sms.example/receipts/kannel/?id=42&sig=")
    filled = dlr_url.replace("%d", "1").replace("%A", "")
    params = dict(parse_qsl(urlsplit(filled).query, keep_blank_values=True))
    receipt = parse_kannel(params, provider="kannel", secret=SECRET, received_at=0.0)
    assert receipt is not None and (receipt.message_id, receipt.delivered) == (42, True)
    assert SECRET not in dlr_url


def test_a_text_outside_ascii_goes_as_ucs2():
    seen: list = []

    async def send_cyrillic(transport):
        await transport.send(OutgoingMessage(id=1, phone="79001234567", text="Привет"))

    against(202, "0: Accepted for delivery", send_cyrillic, seen=seen)
    assert seen[0][2]["coding"] == "2" and seen[0][2]["text"] == "Привет"


@pytest.mark.parametrize(
    ("status", "body", "outcome", "answer"),
    [
        (202, "0: Accepted for delivery", Outcome.SENT, ProviderAnswer.ACCEPTED),
        (202, "3: Queued for later delivery", Outcome.SENT, ProviderAnswer.ACCEPTED),
        (403, "Authorization failed for sendsms", Outcome.DEFERRED, ProviderAnswer.AUTH_REFUSED),
        (400, "Missing receiver number, rejected", Outcome.FAILED, ProviderAnswer.REJECTED),
        (429, "Too many requests", Outcome.THROTTLED, ProviderAnswer.THROTTLED),
        (503, "Sender full", Outcome.RETRY, ProviderAnswer.ERROR),
        (500, "Internal error", Outcome.RETRY, ProviderAnswer.ERROR),
        (302, "", Outcome.RETRY, ProviderAnswer.ERROR),  # a redirect is not followed
    ],
)
def test_kannels_answers_take_their_place_in_the_fate_table(status, body, outcome, answer):
    async def ended_by(transport):
        try:
            await transport.send(MESSAGE)
        except TransportError as error:
            return error
        return None

    fate = fate_of(against(status, body, ended_by), request_timeout=1.0)
    assert (fate.outcome, fate.answer) == (outcome, answer)


def test_a_refused_connection_is_retried_and_its_error_names_neither_password_nor_phone():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there

    async def scenario():
        async with _transport(f"http://127.0.0.1:{port}/cgi-bin/sendsms") as transport:
            return await failure_of(transport)

    error = asyncio.run(scenario())
    assert not error.permanent
    assert error.detail == f"ClientConnectorError (http://127.0.0.1:{port}/cgi-bin/sendsms)"


def test_a_connection_timeout_names_neither_password_nor_phone():
    """aiohttp's ConnectionTimeoutError quotes the whole URL it was given, query and all."""

    def time_out(url, **kwargs):
        raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {url}")

    async def scenario():
        async with _transport("http://127.0.0.1:9/cgi-bin/sendsms") as transport:
            transport._session.get = time_out
            return await failure_of(transport)

    error = asyncio.run(scenario())
    assert not error.permanent
    assert error.detail == "ConnectionTimeoutError (http://127.0.0.1:9/cgi-bin/sendsms)"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:13013/cgi-bin/sendsms?user=x", "http://h/cgi-bin/sendsms#x"]
)
def test_a_sendsms_url_with_a_query_or_fragment_is_refused(url):
    with pytest.raises(ValueError, match="no query or fragment"):
        _transport(url)
