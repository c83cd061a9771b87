"""The fake provider's state and its two aiohttp servers.

The send port (``POST /v1/send/{msgId}``, a low-level aiohttp server) speaks the provider contract
and misbehaves on demand. The control application, on a second port so that it stays reachable
while the send port refuses connections, reads the records and changes the configuration at runtime.
"""

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fake_provider.behaviour import Behaviour, Config
from fake_provider.records import Records

logger = logging.getLogger(__name__)

PHONE_MIN = 70_000_000_000
PHONE_MAX = 79_999_999_999
MSG_ID_MAX = 2**63 - 1
OUTAGE_MODES = ("refuse", "503", "none")

OK_BODY = b'{"code": 0, "message": "OK"}'
REJECTED_BODY = b'{"code": 3, "message": "rejected"}'
SEND_PATH = "/v1/send/"
HANGING = web.RequestKey("hanging", bool)
# Closing connections that wait on a hang should not keep a shutdown waiting for long.
SHUTDOWN_TIMEOUT = 1.0


class FakeProvider:
    """One fake provider: its behaviour, its records, its outage state and its two listening sites."""

    def __init__(
        self,
        config: Config,
        *,
        host: str = "127.0.0.1",
        port: int = 8070,
        control_port: int | None = None,
        seed: int | None = None,
        access_log: bool = False,
    ) -> None:
        self.behaviour = Behaviour(config, seed=seed)
        self.records = Records()
        self.host = host
        self.port = port
        self.control_port = port + 1 if control_port is None else control_port
        self.in_flight = 0
        self._access_log = access_log
        self._outage_mode: str | None = None
        self._outage_until = 0.0  # time.monotonic()
        self._outage_task: asyncio.Task[None] | None = None
        self._send_runner: web.ServerRunner | None = None
        self._send_site: web.TCPSite | None = None
        self._control_runner: web.AppRunner | None = None

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._send_runner = web.ServerRunner(
            web.Server(send_handler(self), **self._handler_options()), shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        await self._send_runner.setup()
        await self._open_send_site()
        assert self._send_site is not None
        self.port = self._send_site.port

        self._control_runner = web.AppRunner(
            create_control_app(self), shutdown_timeout=SHUTDOWN_TIMEOUT, **self._handler_options()
        )
        await self._control_runner.setup()
        control_site = web.TCPSite(self._control_runner, self.host, self.control_port)
        await control_site.start()
        self.control_port = control_site.port

    async def stop(self) -> None:
        if self._outage_task is not None:
            self._outage_task.cancel()
        for runner in (self._send_runner, self._control_runner):
            if runner is not None:
                await runner.cleanup()

    def _handler_options(self) -> dict[str, Any]:
        access_log = logging.getLogger("aiohttp.access") if self._access_log else None
        # handler_cancellation: a client that goes away cancels its handler, which ends a hang
        # and keeps a request whose client gave up from ever being recorded as accepted.
        return {"access_log": access_log, "handler_cancellation": True}

    async def _open_send_site(self, *, retry: bool = False) -> None:
        assert self._send_runner is not None
        # Checked on every turn: another opener may have won, or a refuse outage begun, meanwhile.
        while self._send_site is None and self._outage_mode != "refuse":
            # A deep backlog: hundreds of clients may connect at once when the port comes back.
            site = web.TCPSite(self._send_runner, self.host, self.port, backlog=1024)
            try:
                await site.start()
            except OSError as error:
                await site.stop()
                if not retry:
                    raise
                # Someone else took the port during a refuse outage: keep trying until it is free.
                logger.warning("cannot listen on %s:%s again (%s), retrying", self.host, self.port, error)
                await asyncio.sleep(0.5)
                continue
            self._send_site = site

    async def _close_send_site(self) -> None:
        if self._send_site is None:
            return
        await self._send_site.stop()
        self._send_site = None
        # Kept-alive connections would otherwise go on working through the outage.
        assert self._send_runner is not None and self._send_runner.server is not None
        for connection in self._send_runner.server.connections:
            connection.force_close()

    # --- outages ---------------------------------------------------------------------------

    async def start_outage(self, mode: str, seconds: float) -> None:
        """Refuse connections, or answer 503 to every send, for `seconds`; mode "none" ends an outage."""
        if self._outage_task is not None:
            self._outage_task.cancel()
            self._outage_task = None
        if mode == "none":
            await self._end_outage()
            return
        self._outage_mode = mode
        self._outage_until = time.monotonic() + seconds
        if mode == "refuse":
            await self._close_send_site()
        else:
            await self._open_send_site(retry=True)
        self._outage_task = asyncio.create_task(self._end_outage_after(seconds))
        logger.info("outage %s for %s s", mode, seconds)

    async def _end_outage_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._outage_task = None
        await self._end_outage()

    async def _end_outage(self) -> None:
        if self._outage_mode is not None:
            logger.info("outage %s over", self._outage_mode)
        self._outage_mode = None
        await self._open_send_site(retry=True)

    def outage(self) -> dict[str, Any] | None:
        if self._outage_mode is None:
            return None
        return {"mode": self._outage_mode, "seconds_left": max(0.0, self._outage_until - time.monotonic())}

    # --- sending ---------------------------------------------------------------------------

    async def send(self, request: web.BaseRequest, path_id: str) -> web.Response:
        """Answer one send (`path_id`: the path's msgId); every request ends up in exactly one outcome."""
        self.records.requests_total += 1
        self.in_flight += 1
        try:
            return await self._answer(request, path_id)
        except asyncio.CancelledError:
            # The client went away (or we shut down); a hang was counted when it began.
            if not request.get(HANGING):
                self.records.count("abandoned")
            raise
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.BaseRequest, path_id: str) -> web.Response:
        records = self.records
        if self._outage_mode == "503":
            records.count("error_5xx")
            return web.Response(status=503, text="provider outage")

        behaviour = self.behaviour
        config = behaviour.config
        msg_id: int | None = None
        if request.headers.get("Authorization") != config.authorization:
            outcome = "unauthorized"
        else:
            msg_id = _valid_msg_id(path_id, await request.read())
            outcome = "bad_request" if msg_id is None else behaviour.draw_outcome(config)
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
            assert msg_id is not None
            records.accept(msg_id)
            return web.Response(body=OK_BODY, content_type="application/json")
        records.count(outcome)
        return self._misbehaving_response(outcome)

    def _misbehaving_response(self, outcome: str) -> web.Response:
        if outcome == "unauthorized":
            return web.json_response({"message": "missing or bad token"}, status=401)
        if outcome == "bad_request":
            return web.json_response({"message": "invalid input"}, status=400)
        if outcome == "rejected":
            return web.Response(body=REJECTED_BODY, content_type="application/json")
        if outcome == "error_5xx":
            return web.Response(status=self.behaviour.error_status(), text="provider error")
        body, content_type = self.behaviour.garbage()
        return web.Response(body=body, content_type=content_type)


def _valid_msg_id(path_id: str, body: bytes) -> int | None:
    """The message id if the path and body follow the contract, else None."""
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
    return msg_id


# --- applications --------------------------------------------------------------------------

PROVIDER = web.AppKey("provider", FakeProvider)


async def _health(request: web.BaseRequest) -> web.Response:  # on both ports
    return web.json_response({"status": "ok"})


async def _stats(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    after = request.query.get("after")
    if after is not None:
        try:
            after_time = float(after)
        except ValueError:
            raise web.HTTPBadRequest(text="after must be a unix time") from None
    stats = provider.records.stats(after=None if after is None else after_time)
    return web.json_response(stats | {"in_flight": provider.in_flight})


async def _accepted(request: web.Request) -> web.Response:
    return web.json_response(request.app[PROVIDER].records.accepted)


async def _reset(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    provider.records.reset()
    return web.json_response(provider.records.stats())


def _config_answer(provider: FakeProvider) -> web.Response:
    return web.json_response(provider.behaviour.config.public() | {"outage": provider.outage()})


async def _get_config(request: web.Request) -> web.Response:
    return _config_answer(request.app[PROVIDER])


async def _put_config(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    changes = await _json_object(request)
    try:
        provider.behaviour.configure(changes)
    except (TypeError, ValueError) as error:
        raise web.HTTPBadRequest(text=str(error)) from None
    return _config_answer(provider)


async def _post_outage(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    body = await _json_object(request)
    mode, seconds = body.get("mode"), body.get("seconds", 0)
    if mode not in OUTAGE_MODES:
        raise web.HTTPBadRequest(text=f"mode must be one of {', '.join(OUTAGE_MODES)}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds < math.inf:
        raise web.HTTPBadRequest(text="seconds must be a non-negative number")
    if mode != "none" and not seconds:
        raise web.HTTPBadRequest(text="an outage needs seconds > 0")
    await provider.start_outage(mode, seconds)
    return _config_answer(provider)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


def _not_found() -> web.Response:
    return web.Response(status=404, text="404: Not Found")


def _method_not_allowed(allowed: str) -> web.Response:
    return web.Response(status=405, text="405: Method Not Allowed", headers={"Allow": allowed})


def send_handler(provider: FakeProvider) -> Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]:
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
            return await _health(request)
        return _not_found()

    return handle


def create_control_app(provider: FakeProvider) -> web.Application:
    app = web.Application()
    app[PROVIDER] = provider
    app.router.add_get("/health", _health)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/accepted", _accepted)
    app.router.add_get("/config", _get_config)
    app.router.add_put("/control/config", _put_config)
    app.router.add_post("/control/outage", _post_outage)
    app.router.add_post("/control/reset", _reset)
    return app
