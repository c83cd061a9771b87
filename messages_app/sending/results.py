"""Results on their way to the store: written as soon as the previous write is done (tens of
milliseconds), in batches, each row fenced by its claim's token.

A result not yet written is a message the provider has answered that a killed worker would send
again (SENDER_LOST_CLAIMS=resend): results wait for company only while there are few of them."""

import asyncio
import logging

from .outcomes import Result
from .store import MessageStore, StoreUnavailable

log = logging.getLogger(__name__)

FLUSH_PAUSE = 0.03  # seconds between two writes: lets a few results gather into one write
FULL_BATCH = 50  # results waiting that are written at once: gathering more would save few writes
RETRY_PAUSE = 1.0  # seconds before a write the store refused is tried again


class ResultWriter:
    def __init__(self, *, store: MessageStore):
        self._store = store
        self._results: list[Result] = []
        self._ready = asyncio.Event()
        self._closing = False

    def add(self, result: Result) -> None:
        self._results.append(result)
        self._ready.set()

    def __bool__(self) -> bool:
        """Some result is not written yet."""
        return bool(self._results)

    def close(self) -> None:
        """`run` writes what is left and returns."""
        self._closing = True
        self._ready.set()

    async def run(self) -> None:
        while True:
            await self._ready.wait()
            last = self._closing
            try:
                await self._write()
            except StoreUnavailable:
                log.exception(
                    "sender %s: results not written yet, trying again in a second", self._store.holder
                )
                await asyncio.sleep(RETRY_PAUSE)
                self._ready.set()
                continue
            if last:
                return
            if len(self._results) < FULL_BATCH:
                await asyncio.sleep(FLUSH_PAUSE)

    async def _write(self) -> None:
        self._ready.clear()
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            await self._store.record(results=results)
        except StoreUnavailable:
            self._results[:0] = results  # kept, in order, for the next write
            raise
