"""The fake provider's state and its two aiohttp servers.

The send port (``POST /v1/send/{msgId}``, a low-level aiohttp server) speaks the provider contract
and misbehaves on demand. The control application, on a second port so that it stays reachable
while the send port refuses connections, reads the records and changes the configuration at runtime.
What a send is answered is in ``sends``, the configuration and its draws in ``behaviour``, what is
recorded in ``records``.
"""

import asyncio
import logging
import math
import time
from typing import Any

from aiohttp import web

from fake_provider.behaviour import Behaviour, Config
from fake_provider.receipts import ReceiptPoster
from fake_provider.records import Records
from fake_provider.sends import HANGING, Api, answer, health, send_handler

logger = logging.getLogger(__name__)

OUTAGE_MODES = ("refuse", "503", "none")

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
        self.receipts = ReceiptPoster()
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
        await self.receipts.start()
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
        await self.receipts.stop()

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

    async def send(self, request: web.BaseRequest, api: Api) -> web.Response:
        """Answer one send in `api`'s shape; every request ends up in exactly one outcome."""
        self.records.requests_total += 1
        self.in_flight += 1
        try:
            if self._outage_mode == "503":
                self.records.count("error_5xx")
                return web.Response(status=503, text="provider outage")
            return await answer(self, request, api)
        except asyncio.CancelledError:
            # The client went away (or we shut down); a hang was counted when it began.
            if not request.get(HANGING):
                self.records.count("abandoned")
            raise
        finally:
            self.in_flight -= 1


# --- applications --------------------------------------------------------------------------

PROVIDER = web.AppKey("provider", FakeProvider)


async def _stats(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    after = request.query.get("after")
    if after is not None:
        try:
            after_time = float(after)
        except ValueError:
            raise web.HTTPBadRequest(text="after must be a unix time") from None
    stats = provider.records.stats(after=None if after is None else after_time)
    return web.json_response(stats | {"in_flight": provider.in_flight, "receipts": provider.receipts.stats()})


async def _accepted(request: web.Request) -> web.Response:
    return web.json_response(request.app[PROVIDER].records.accepted)


async def _accepted_texts(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[PROVIDER].records.recent_texts))


async def _reset(request: web.Request) -> web.Response:
    provider = request.app[PROVIDER]
    provider.records.reset()
    provider.receipts.reset()
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


def create_control_app(provider: FakeProvider) -> web.Application:
    app = web.Application()
    app[PROVIDER] = provider
    app.router.add_get("/health", health)
    app.router.add_get("/stats", _stats)
    app.router.add_get("/accepted", _accepted)
    app.router.add_get("/accepted/texts", _accepted_texts)
    app.router.add_get("/config", _get_config)
    app.router.add_put("/control/config", _put_config)
    app.router.add_post("/control/outage", _post_outage)
    app.router.add_post("/control/reset", _reset)
    return app
