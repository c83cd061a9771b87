import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from .clock import FakeClock
from .fakes import ScriptedTransport

# A script maps (message id, attempt number at the provider) to (HTTP status, body, delay seconds).
Script = Callable[[int, int], tuple[int, bytes, float]]


def accept_all(msg_id: int, attempt: int) -> tuple[int, bytes, float]:
    return 200, b'{"code": 0, "message": "OK"}', 0.0


def _is_acceptance(body: bytes) -> bool:
    try:
        return json.loads(body).get("code") == 0
    except (ValueError, AttributeError):
        return False


@dataclass
class ScriptedProvider:
    """A provider on 127.0.0.1 whose answers a test scripts per message, recording what it accepted."""

    url: str = ""
    script: Script = accept_all
    requests: list[tuple[int, float]] = field(default_factory=list)
    accepted: list[tuple[int, float]] = field(default_factory=list)

    def attempts_of(self, msg_id: int) -> int:
        return sum(1 for seen, _ in self.requests if seen == msg_id)

    async def handle(self, request: web.Request) -> web.Response:
        msg_id = int(request.match_info["msg_id"])
        self.requests.append((msg_id, time.time()))
        status, body, delay = self.script(msg_id, self.attempts_of(msg_id))
        if delay:
            await asyncio.sleep(delay)
        if status == 200 and _is_acceptance(body) and not request.transport.is_closing():
            self.accepted.append((msg_id, time.time()))
        return web.Response(status=status, body=body)


@pytest.fixture
def scripted_provider():
    """A ScriptedProvider in this process, in its own thread and loop (the sender under test runs
    its own loop)."""
    scripted = ScriptedProvider()
    ready = threading.Event()
    loop = asyncio.new_event_loop()

    async def start():
        app = web.Application()
        app.router.add_post("/v1/send/{msg_id}", scripted.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        scripted.url = f"http://127.0.0.1:{port}/v1"
        ready.set()
        return runner

    def serve():
        asyncio.set_event_loop(loop)
        runner = loop.run_until_complete(start())
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(5)
    yield scripted
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture
def clock() -> FakeClock:
    """The sending engine's clock, on fake time."""
    return FakeClock()


@pytest.fixture
def transport(clock) -> ScriptedTransport:
    """The provider as the sender's transport meets it, answering at once unless scripted."""
    return ScriptedTransport(clock)
