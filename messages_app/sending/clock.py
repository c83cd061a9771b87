"""The one clock every part of the sending engine reads.

Two kinds of time, from one object: the event loop's time for deadlines, timers and the pace (it
never jumps), and the wall clock for the database and for pauses shared with other processes. A
test hands the engine a clock whose loop skips ahead whenever every task waits
(`messages_app.sending.tests.clock.FakeClock`), so a round trip of five seconds costs no real time.
"""

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

# What the pace's parts take for a clock: seconds, from whatever source the engine's Clock hands them.
TimeSource = Callable[[], float]


class Clock:
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        import uvloop  # the sender's only: the web never loads it

        # uvloop: the event loop is most of a sender's CPU, and uvloop's costs less per message.
        return uvloop.new_event_loop()

    def monotonic(self) -> float:
        """Seconds on the running event loop's clock (its timers and `call_at` use the same)."""
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        """Seconds since the epoch, comparable between processes."""
        return time.time()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), tz=UTC)
