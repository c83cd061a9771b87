"""The probe transport: how each provider answer is classified, and what goes over the wire.

The wire tests run the transport against a scripted aiohttp server on 127.0.0.1: real HTTP,
real timeouts, real refused connections.
"""

import asyncio
import json
import socket

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from messages_app.sending.transports.answers import parse_retry_after
from messages_app.sending.transports.base import (
    OutgoingMessage,
    TransportAuthError,
    TransportError,
    TransportThrottled,
)
from messages_app.sending.transports.probe import ProbeTransport, classify_answer

MESSAGE = OutgoingMessage(id=42, phone="79001234567", text='Привет, "друг"\n\\ 1 < 2')


def test_code_zero_is_accepted():
    assert classify_answer(200, b'{"code": 0, "message": "OK"}') is None


@pytest.mark.parametrize("body", [b'{"code": 3, "message": "no"}', b'{"code": -1}'])
def test_non_zero_code_is_a_permanent_rejection(body):
    with pytest.raises(TransportError) as caught:
        classify_answer(200, body)
    assert caught.value.permanent
    assert not isinstance(caught.value, TransportAuthError)


@pytest.mark.parametrize(
    "body",
    [b"<html>busy</html>", b"", b'{"message": "OK"}', b'{"code": "0"}', b'{"code": true}', b"[0]", b"null"],
)
def test_answer_that_is_not_the_expected_json_is_retried(body):
    with pytest.raises(TransportError) as caught:
        classify_answer(200, body)
    assert not caught.value.permanent


def test_bad_request_is_permanent():
    with pytest.raises(TransportError) as caught:
        classify_answer(400, b"")
    assert caught.value.permanent


@pytest.mark.parametrize("status", [401, 403])
def test_refused_token_is_an_auth_error(status):
    with pytest.raises(TransportAuthError):
        classify_answer(status, b"")


@pytest.mark.parametrize("status", [500, 502, 503, 504, 404, 301, 307, 308])
def test_server_errors_redirects_and_surprises_are_retried(status):
    with pytest.raises(TransportError) as caught:
        classify_answer(status, b'{"code": 0}')
    assert not caught.value.permanent
    assert not isinstance(caught.value, TransportThrottled)


def test_too_many_requests_is_throttling_not_a_failure_of_the_message():
    with pytest.raises(TransportThrottled) as caught:
        classify_answer(429, b"slow down")
    assert not caught.value.permanent
    assert caught.value.retry_after is None


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Sun, 29 Nov 2026 07:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 06:59:00 GMT", 0.0),  # already past: go now
        ("soon", None),
        ("-3", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_is_read_as_seconds_or_an_http_date(header, seconds):
    now = 1_795_935_600.0  # Sun, 29 Nov 2026 07:00:00 GMT
    assert parse_retry_after(header, now=now) == seconds


def _transport(url: str) -> ProbeTransport:
    return ProbeTransport(base_url=url, token="secret-token", connect_timeout=1.0, max_connections=10)


def against(handler, use, *, base_path="/v1"):
    """Serve `handler` as the provider on 127.0.0.1 (every POST) and run `use(transport)` against it,
    the transport's base URL ending in `base_path`."""

    async def scenario():
        app = web.Application()
        app.router.add_post("/{path:.*}", handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            async with _transport(str(server.make_url(base_path))) as transport:
                return await use(transport)
        finally:
            await server.close()

    return asyncio.run(scenario())


async def send_one(transport):
    await transport.send(MESSAGE)


async def failure_of(transport) -> TransportError:
    with pytest.raises(TransportError) as caught:
        await transport.send(MESSAGE)
    return caught.value


def test_request_carries_the_contract_path_token_and_body():
    seen = []

    async def handler(request):
        headers = request.headers
        seen.append((request.path, headers["Authorization"], headers["Content-Type"], await request.json()))
        return web.json_response({"code": 0, "message": "OK"})

    against(handler, send_one)

    assert seen == [
        (
            "/v1/send/42",
            "Bearer secret-token",
            "application/json",
            {"id": 42, "phone": 79001234567, "text": MESSAGE.text},
        )
    ]


def test_a_base_url_with_a_path_prefix_keeps_it_encoded_and_the_text_any_character():
    seen = []

    async def handler(request):
        seen.append((request.raw_path, await request.json()))
        return web.json_response({"code": 0})

    async def send_one_with_any_character(transport):
        await transport.send(OutgoingMessage(id=7, phone="79001234567", text="\ud800 \u2028 \x00 😀"))

    against(handler, send_one_with_any_character, base_path="/sms%20gw/v1/")

    assert seen == [("/sms%20gw/v1/send/7", {"id": 7, "phone": 79001234567, "text": "\ud800 \u2028 \x00 😀"})]


@pytest.mark.parametrize("base_url", ["http://127.0.0.1:8070/v1?key=x", "http://127.0.0.1:8070/v1#send"])
def test_a_base_url_with_a_query_or_fragment_is_refused(base_url):
    with pytest.raises(ValueError, match="no query or fragment"):
        _transport(base_url)


def test_requests_reuse_pooled_keep_alive_connections():
    peers = set()

    async def handler(request):
        peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"code": 0})

    async def send_twenty(transport):
        for _ in range(20):
            await send_one(transport)

    against(handler, send_twenty)

    assert len(peers) == 1


def test_refused_connection_is_retryable():
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # closed again: nothing listens there

    async def scenario():
        async with _transport(f"http://127.0.0.1:{port}/v1") as transport:
            return await failure_of(transport)

    error = asyncio.run(scenario())

    assert not error.permanent
    assert "Connect" in error.detail or "Connection" in error.detail


def test_a_redirect_is_not_followed_and_is_retryable():
    followed = []

    async def handler(request):
        if "followed" in request.query:
            followed.append(await request.read())
            return web.json_response({"code": 0})
        raise web.HTTPTemporaryRedirect(f"{request.path}?followed=1")

    error = against(handler, failure_of)

    assert followed == []
    assert not error.permanent
    assert error.detail == "HTTP 307"


def test_garbage_over_the_wire_is_retryable():
    async def handler(request):
        return web.Response(text="upstream hiccup", status=200)

    assert not against(handler, failure_of).permanent


def test_answer_body_is_parsed_as_json_not_by_content_type():
    async def handler(request):
        return web.Response(body=json.dumps({"code": 0}).encode(), content_type="text/plain")

    assert against(handler, send_one) is None  # accepted: no TransportError


def test_throttled_answer_over_the_wire_carries_its_retry_after():
    async def handler(request):
        return web.Response(status=429, text="too many", headers={"Retry-After": "3"})

    error = against(handler, failure_of)

    assert isinstance(error, TransportThrottled)
    assert error.retry_after == 3.0
