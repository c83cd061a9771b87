"""The receipt server: providers' delivery reports taken at the pace a gateway posts them.

`manage.py serve_receipts` runs it: an aiohttp server that answers `/receipts/<provider>/` with the
web's answers (`sending.receipts.receipt_answer` decides both) and queues final receipts in Redis for the
`write_receipts` task, without Django's request handling and without the database. Receipts that
arrive while one RPUSH is on its way go together in the next, so Redis sees a few pushes a second
rather than one per receipt. A receipt is answered 202 only once it is queued; 503 while the queue
cannot be reached, so that the provider keeps it and tries again.
"""

import asyncio
import time
from collections.abc import Callable, Mapping

import redis.asyncio as aioredis
from aiohttp import web

from .receipts import QUEUE_ERRORS, receipt_answered, receipt_deferred
from .sending.receipts import QUEUE_DOWN, receipt_answer

PROVIDER_PATH = "/receipts/{provider:[-a-zA-Z0-9_]+}/"  # the web's <slug:provider>


class QueueBatcher:
    """Pushes what callers hand it to a Redis list, everything that waits in one RPUSH."""

    def __init__(self, client: aioredis.Redis, key: str):
        self._client, self._key = client, key
        self._waiting: list[tuple[str, asyncio.Future]] = []
        self._pushing: asyncio.Task | None = None
        self.pushes = 0

    async def push(self, item: str) -> None:
        """Returns once `item` is in the list; raises RedisError when it could not be put there."""
        done = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._pushing is None:
            self._pushing = asyncio.create_task(self._push_waiting())
        await done

    async def _push_waiting(self) -> None:
        batch: list[tuple[str, asyncio.Future]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                try:
                    await self._client.rpush(self._key, *(item for item, _ in batch))
                except QUEUE_ERRORS as error:
                    _settle(batch, error)
                    continue
                self.pushes += 1
                _settle(batch, None)
        finally:
            # Cancelled (the server stopping) or failed otherwise: nobody is left waiting for ever.
            stopped = ConnectionError("the receipt server stopped before the receipt was queued")
            _settle(batch + self._waiting, stopped)
            self._waiting = []
            self._pushing = None


def _settle(batch: list[tuple[str, asyncio.Future]], error: BaseException | None) -> None:
    """Wakes the handlers of a batch; a handler cancelled meanwhile has nothing to wake."""
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


def receipt_app(
    *, secrets: Mapping[str, str], queue: QueueBatcher, clock: Callable[[], float] = time.time
) -> web.Application:
    async def take(request: web.Request) -> web.Response:
        provider = request.match_info["provider"]
        params = dict(request.query)
        if request.method == "POST":
            params.update(await request.post())
        answer = receipt_answer(
            params, provider=provider, secret=secrets.get(provider) or None, received_at=clock()
        )
        receipt_answered(answer, provider)
        if answer.receipt is not None:
            try:
                await queue.push(answer.receipt.encoded())
            except QUEUE_ERRORS as error:
                receipt_deferred(provider, error)
                return web.json_response(QUEUE_DOWN, status=503)
        return web.json_response(answer.body, status=answer.status)

    async def live(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_route("GET", PROVIDER_PATH, take)
    app.router.add_route("POST", PROVIDER_PATH, take)
    app.router.add_get("/health/live", live)
    return app
