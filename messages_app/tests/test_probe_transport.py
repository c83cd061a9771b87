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

from messages_app.transports.base import OutgoingMessage, TransportAuthError, TransportError
from messages_app.transports.probe import ProbeTransport, classify_answer

MESSAGE = OutgoingMessage(id=42, phone="79001234567", text="Hello")


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


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 404])
def test_overload_server_errors_and_surprises_are_retried(status):
    with pytest.raises(TransportError) as caught:
        classify_answer(status, b'{"code": 0}')
    assert not caught.value.permanent


def _transport(url: str, *, read_timeout: float = 5.0) -> ProbeTransport:
    return ProbeTransport(
        base_url=url, token="secret-token", connect_timeout=1.0, read_timeout=read_timeout, max_connections=10
    )


async def _serve(handler):
    app = web.Application()
    app.router.add_post("/v1/send/{msg_id}", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


def test_request_carries_the_contract_path_token_and_body():
    seen = []

    async def handler(request):
        seen.append((request.match_info["msg_id"], request.headers["Authorization"], await request.json()))
        return web.json_response({"code": 0, "message": "OK"})

    async def scenario():
        server = await _serve(handler)
        try:
            async with _transport(str(server.make_url("/v1"))) as transport:
                await transport.send(MESSAGE, timeout=5)
        finally:
            await server.close()

    asyncio.run(scenario())
    assert seen == [("42", "Bearer secret-token", {"id": 42, "phone": 79001234567, "text": "Hello"})]


def test_requests_reuse_pooled_keep_alive_connections():
    peers = set()

    async def handler(request):
        peers.add(request.transport.get_extra_info("peername"))
        return web.json_response({"code": 0})

    async def scenario():
        server = await _serve(handler)
        try:
            async with _transport(str(server.make_url("/v1"))) as transport:
                for _ in range(20):
                    await transport.send(MESSAGE, timeout=5)
        finally:
            await server.close()

    asyncio.run(scenario())
    assert len(peers) == 1


def test_slow_answer_gives_up_at_the_time_left_and_is_retryable():
    async def handler(request):
        await asyncio.sleep(5)
        return web.json_response({"code": 0})

    async def scenario():
        server = await _serve(handler)
        try:
            async with _transport(str(server.make_url("/v1"))) as transport:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(TransportError) as caught:
                    await transport.send(MESSAGE, timeout=0.3)
                return loop.time() - started, caught.value
        finally:
            await server.close()

    took, error = asyncio.run(scenario())
    assert 0.25 <= took < 1.5
    assert not error.permanent


def test_refused_connection_is_retryable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there

    async def scenario():
        async with _transport(f"http://127.0.0.1:{port}/v1") as transport:
            with pytest.raises(TransportError) as caught:
                await transport.send(MESSAGE, timeout=2)
            return caught.value

    error = asyncio.run(scenario())
    assert not error.permanent
    assert "Connect" in error.detail or "Connection" in error.detail


def test_garbage_over_the_wire_is_retryable():
    async def handler(request):
        return web.Response(text="upstream hiccup", status=200)

    async def scenario():
        server = await _serve(handler)
        try:
            async with _transport(str(server.make_url("/v1"))) as transport:
                with pytest.raises(TransportError) as caught:
                    await transport.send(MESSAGE, timeout=2)
                return caught.value
        finally:
            await server.close()

    assert not asyncio.run(scenario()).permanent


def test_answer_body_is_parsed_as_json_not_by_content_type():
    async def handler(request):
        return web.Response(body=json.dumps({"code": 0}).encode(), content_type="text/plain")

    async def scenario():
        server = await _serve(handler)
        try:
            async with _transport(str(server.make_url("/v1"))) as transport:
                await transport.send(MESSAGE, timeout=2)
        finally:
            await server.close()

    asyncio.run(scenario())
