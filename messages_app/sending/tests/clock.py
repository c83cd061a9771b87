"""The one fake clock of the sending engine's tests.

Outside an event loop it moves only when a test says so (`advance`, `move_to`, or a part awaiting
its `sleep`); it is also callable, so it stands in wherever a part takes a plain `() -> float`
clock. The event loop it makes (`new_event_loop`) runs on fake time with looptime: whenever every
task waits, the loop skips ahead to its next timer, so a round trip of five seconds or a pause of
thirty costs no real time. While the database thread works, fake time runs at the real pace.
"""

import asyncio
from datetime import UTC, datetime

import looptime

from messages_app.sending.clock import Clock


class FakeClock(Clock):
    def __init__(self, *, start: float = 1000.0, wall: float | None = None):
        """`start`: its monotonic reading; `wall`: the wall clock's at that moment (now by default)."""
        self._moved = start
        self._wall_offset = (datetime.now(UTC).timestamp() if wall is None else wall) - start
        self._loop: asyncio.AbstractEventLoop | None = None

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        self._loop = looptime.new_event_loop(start=self._moved)
        return self._loop

    def monotonic(self) -> float:
        # Read from any thread: the database thread asks for the wall time too.
        if self._loop is not None and not self._loop.is_closed():
            self._moved = self._loop.time()
        return self._moved

    def wall(self) -> float:
        return self._wall_offset + self.monotonic()

    def advance(self, seconds: float) -> None:
        assert self._loop is None or self._loop.is_closed(), "inside its loop, time moves by itself"
        self._moved += seconds

    def move_to(self, moment: float) -> None:
        assert moment >= self._moved, "time never goes back"
        self.advance(moment - self._moved)

    async def sleep(self, seconds: float) -> None:
        """A sleep outside its loop: the clock moves (at least a little), other tasks get a turn."""
        self.advance(max(seconds, 1e-6))
        await asyncio.sleep(0)

    def __call__(self) -> float:
        return self.monotonic()
