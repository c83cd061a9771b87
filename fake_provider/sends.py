"""The send port: ``POST /v1/send/{msgId}`` as the provider contract has it, answered as the fake's
behaviour decides, and ``GET /health``."""

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from fake_provider.behaviour import Behaviour
from fake_provider.records import Records

if TYPE_CHECKING:
    from fake_provider.server import FakeProvider

PHONE_MIN = 70_000_000_000
PHONE_MAX = 79_999_999_999
MSG_ID_MAX = 2**63 - 1
OK_BODY = b'{"code": 0, "message": "OK"}'
REJECTED_BODY = b'{"code": 3, "message": "rejected"}'
SEND_PATH = "/v1/send/"
HANGING = web.RequestKey("hanging", bool)


async def answer(
    behaviour: Behaviour, records: Records, request: web.BaseRequest, path_id: str
) -> web.Response:
    """The answer to one send outside an outage, as the behaviour draws it, in the records."""
    config = behaviour.config
    send: tuple[int, str] | None = None
    if request.headers.get("Authorization") != config.authorization:
        outcome = "unauthorized"
    else:
        send = _valid_send(path_id, await request.read())
        outcome = "bad_request" if send is None else behaviour.draw_outcome(config)
    # The account's limit counts every authenticated send, as a provider's would, and answers at once.
    if outcome != "unauthorized" and not behaviour.allows(config, time.monotonic()):
        records.count("throttled")
        headers = {"Retry-After": str(math.ceil(config.retry_after))} if config.retry_after else None
        return web.json_response({"message": "too many requests"}, status=429, headers=headers)

    if outcome == "hang":
        records.count("hang")
        request[HANGING] = True
        # Cancelled when the client disconnects (handler_cancellation).
        await asyncio.sleep(config.hang_seconds)
        return web.Response(status=504, text="hung")

    delay = behaviour.delay(config)
    if delay:
        await asyncio.sleep(delay)

    transport = request.transport
    if transport is None or transport.is_closing():
        # The client gave up (e.g. at a mailing's end): whatever we answer, nobody hears it.
        records.count("abandoned")
        return web.Response(status=499)
    if outcome == "ok":
        assert send is not None
        records.accept(*send)
        return web.Response(body=OK_BODY, content_type="application/json")
    records.count(outcome)
    return _misbehaving_response(behaviour, outcome)


def _misbehaving_response(behaviour: Behaviour, outcome: str) -> web.Response:
    if outcome == "unauthorized":
        return web.json_response({"message": "missing or bad token"}, status=401)
    if outcome == "bad_request":
        return web.json_response({"message": "invalid input"}, status=400)
    if outcome == "rejected":
        return web.Response(body=REJECTED_BODY, content_type="application/json")
    if outcome == "error_5xx":
        return web.Response(status=behaviour.error_status(), text="provider error")
    body, content_type = behaviour.garbage()
    return web.Response(body=body, content_type=content_type)


def _valid_send(path_id: str, body: bytes) -> tuple[int, str] | None:
    """The message id and text if the path and body follow the contract, else None."""
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    msg_id, phone, text = payload.get("id"), payload.get("phone"), payload.get("text")
    if type(msg_id) is not int or not 0 <= msg_id <= MSG_ID_MAX or str(msg_id) != path_id:
        return None
    if type(phone) is not int or not PHONE_MIN <= phone <= PHONE_MAX:
        return None
    if not isinstance(text, str):
        return None
    return msg_id, text


async def health(request: web.BaseRequest) -> web.Response:  # on both ports
    return web.json_response({"status": "ok"})


def _not_found() -> web.Response:
    return web.Response(status=404, text="404: Not Found")


def _method_not_allowed(allowed: str) -> web.Response:
    return web.Response(status=405, text="405: Method Not Allowed", headers={"Allow": allowed})


def send_handler(provider: "FakeProvider") -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
    """The send port's two routes, matched by hand rather than by an application's router: the
    fake shares the bench's cores with the service it measures, and the router was an eighth of
    its CPU per send."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(SEND_PATH):
            path_id = path[len(SEND_PATH) :]
            if not path_id or "/" in path_id:
                return _not_found()
            if request.method != "POST":
                return _method_not_allowed("POST")
            if request.headers.get("Expect", "").lower() == "100-continue":
                # What the router's default did: curl asks for it before a body over 1 KB.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0
            return await provider.send(request, path_id)
        if path == "/health":
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed("GET,HEAD")
            return await health(request)
        return _not_found()

    return handle
