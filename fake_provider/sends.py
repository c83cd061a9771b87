"""The send port: ``POST /v1/send/{msgId}`` as the provider contract has it, Kannel's
``GET /cgi-bin/sendsms``, both answered as the fake's behaviour decides, and ``GET /health``."""

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from fake_provider.behaviour import Behaviour, Config
from fake_provider.receipts import dlr_msg_id

if TYPE_CHECKING:
    from fake_provider.server import FakeProvider

PHONE_MIN = 70_000_000_000
PHONE_MAX = 79_999_999_999
MSG_ID_MAX = 2**63 - 1
OK_BODY = b'{"code": 0, "message": "OK"}'
REJECTED_BODY = b'{"code": 3, "message": "rejected"}'
SEND_PATH = "/v1/send/"
KANNEL_PATH = "/cgi-bin/sendsms"
HANGING = web.RequestKey("hanging", bool)


class ProbeApi:
    """``POST /v1/send/{msgId}`` with a bearer token and a JSON body (docs/provider-api.md)."""

    def __init__(self, path_id: str) -> None:
        self.path_id = path_id

    def authorized(self, request: web.BaseRequest, config: Config) -> bool:
        return request.headers.get("Authorization") == config.authorization

    async def send(self, request: web.BaseRequest) -> tuple[int, str] | None:
        """The message's id and text, None for a request the API refuses."""
        return _valid_send(self.path_id, await request.read())

    def accepted(self, provider: "FakeProvider", request: web.BaseRequest) -> web.Response:
        return web.Response(body=OK_BODY, content_type="application/json")

    def throttled(self, headers: dict[str, str] | None) -> web.Response:
        return web.json_response({"message": "too many requests"}, status=429, headers=headers)

    def misbehaving(self, behaviour: Behaviour, outcome: str) -> web.Response:
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


class KannelApi:
    """Kannel's smsbox ``GET /cgi-bin/sendsms`` (the token is the password), answered as Kannel 1.4.5
    answers, and delivery reports posted to the dlr-url as its bearerbox would (``receipts``). The
    message id recorded is the one our dlr-url carries."""

    def authorized(self, request: web.BaseRequest, config: Config) -> bool:
        return bool(request.query.get("username")) and request.query.get("password") == config.token

    async def send(self, request: web.BaseRequest) -> tuple[int, str] | None:
        query = request.query
        if not query.get("to", "").isdigit() or "text" not in query:
            return None
        msg_id = dlr_msg_id(query.get("dlr-url", ""))
        return None if msg_id is None else (msg_id, query["text"])

    def accepted(self, provider: "FakeProvider", request: web.BaseRequest) -> web.Response:
        query = request.query
        mask = query.get("dlr-mask", "")
        if query.get("dlr-url") and mask.isdigit():
            # As Kannel does: only the report types the mask asks for.
            drawn = provider.behaviour.draw_receipts(provider.behaviour.config)
            asked = [(delay, kind) for delay, kind in drawn if kind & int(mask)]
            if asked or not drawn:  # none drawn: lost; none asked for: nothing to post
                provider.receipts.post_later(query["dlr-url"], asked)
        return web.Response(status=202, text="0: Accepted for delivery", content_type="text/html")

    def throttled(self, headers: dict[str, str] | None) -> web.Response:
        return web.Response(status=429, text="Too many requests", headers=headers, content_type="text/html")

    def misbehaving(self, behaviour: Behaviour, outcome: str) -> web.Response:
        status, text = {
            "unauthorized": (403, "Authorization failed for sendsms"),
            "bad_request": (400, "Missing receiver number, rejected"),
            "rejected": (400, "Rejected by the SMSC"),
            "error_5xx": (behaviour.error_status(), "Temporal failure, try again later"),
            "garbage": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
        }[outcome]
        return web.Response(status=status, text=text, content_type="text/html")


Api = ProbeApi | KannelApi


async def answer(provider: "FakeProvider", request: web.BaseRequest, api: Api) -> web.Response:
    """The answer to one send outside an outage, as the behaviour draws it, in the records."""
    behaviour, records = provider.behaviour, provider.records
    config = behaviour.config
    send: tuple[int, str] | None = None
    if not api.authorized(request, config):
        outcome = "unauthorized"
    else:
        send = await api.send(request)
        outcome = "bad_request" if send is None else behaviour.draw_outcome(config)
    # The account's limit counts every authenticated send, as a provider's would, and answers at once.
    if outcome != "unauthorized" and not behaviour.allows(config, time.monotonic()):
        records.count("throttled")
        return api.throttled(
            {"Retry-After": str(math.ceil(config.retry_after))} if config.retry_after else None
        )

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
        return api.accepted(provider, request)
    records.count(outcome)
    return api.misbehaving(behaviour, outcome)


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


KANNEL_API = KannelApi()


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
            return await provider.send(request, ProbeApi(path_id))
        if path == KANNEL_PATH:
            if request.method not in ("GET", "HEAD"):
                return web.Response(status=400, text="Invalid content-type", content_type="text/html")
            return await provider.send(request, KANNEL_API)
        if path == "/health":
            if request.method not in ("GET", "HEAD"):
                return _method_not_allowed("GET,HEAD")
            return await health(request)
        return _not_found()

    return handle
