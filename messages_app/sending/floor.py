"""The lowest latency a provider has shown any of its senders lately (no Django here).

Senders sharing a saturated provider each see the queue the others build. Alone, a sender cannot
tell that queue from a provider slower for good, so it would take the queued latency for its new
baseline, grow, and raise the queue further; and a sender that starts beside a queue never sees the
provider's own latency at all. So each compares its latency with the floor as well: the lowest
round-trip mean any sender of the provider reported within the last few dozen round trips. While
their queue is theirs, cutting together brings the latency back down to the floor, which renews
it; a provider slower for good lifts it once the window has passed.

The reports are shared like the rate: in Redis when there is one (every machine), else in a file
(the processes of one machine), else in memory (one process, and the tests).
"""

import fcntl
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .clock import TimeSource

log = logging.getLogger(__name__)

# The window the floor is the lowest over: this many round trips at the floor's latency, within
# bounds. Long enough for senders cutting together to drain their queue and renew the floor; short
# enough that a provider slower for good costs no more than that many round trips of cuts.
WINDOW_ROUND_TRIPS = 40
FLOOR_KEY = "sender:latency-floor"  # a provider's: this, a colon and its name
MIN_WINDOW, MAX_WINDOW = 30.0, 120.0
UNKNOWN_WINDOW = MAX_WINDOW  # before any report: keep all


class FloorStore(Protocol):
    async def exchange(self, *, at: float, lowest: float | None, window: float) -> float | None:
        """Report `lowest` (None: nothing new) as seen at `at`; the lowest report within `window`
        seconds before `at`, or None."""


class _Reports:
    """The arithmetic shared by the memory and file stores: (at, latency) pairs, oldest first."""

    @staticmethod
    def exchange(
        reports: list[list[float]], *, at: float, lowest: float | None, window: float
    ) -> tuple[list[list[float]], float | None]:
        if lowest is not None:
            reports.append([at, lowest])
        kept = [report for report in reports if report[0] > at - MAX_WINDOW]
        recent = [latency for seen_at, latency in kept if seen_at > at - window]
        return kept, min(recent, default=None)


class MemoryFloorStore:
    def __init__(self) -> None:
        self._reports: list[list[float]] = []

    async def exchange(self, *, at: float, lowest: float | None, window: float) -> float | None:
        self._reports, floor = _Reports.exchange(self._reports, at=at, lowest=lowest, window=window)
        return floor


class FileFloorStore:
    """The processes of one machine: the reports in a small file under an exclusive lock."""

    def __init__(self, path: Path):
        self._path = path

    async def exchange(self, *, at: float, lowest: float | None, window: float) -> float | None:
        # Once a second, a few hundred bytes under the lock: not worth a thread.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, 1 << 16, 0)
            try:
                reports = json.loads(raw) if raw else []
            except ValueError:
                reports = []  # a file cut short by a crash: the floor starts over
            reports, floor = _Reports.exchange(reports, at=at, lowest=lowest, window=window)
            data = json.dumps(reports).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)  # releases the lock
        return floor


# KEYS[1]: a sorted set of reports scored by when they were made; ARGV: at, lowest ('' for none),
# window, the longest window. Returns the lowest report within the window, as a string, or nil.
EXCHANGE_SCRIPT = """
local at = tonumber(ARGV[1])
if ARGV[2] ~= '' then
    redis.call('ZADD', KEYS[1], at, ARGV[2] .. '@' .. ARGV[1] .. '@' .. ARGV[5])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', at - tonumber(ARGV[4]))
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])))
local lowest = nil
for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (at - tonumber(ARGV[3])), '+inf')) do
    local latency = tonumber(string.match(member, '^[^@]+'))
    if lowest == nil or latency < lowest then lowest = latency end
end
if lowest == nil then return nil end
return tostring(lowest)
"""


class RedisFloorStore:
    """Every machine's senders: one atomic script per exchange."""

    def __init__(self, url: str, key: str):
        self._url, self._key = url, key
        self._reporter = uuid.uuid4().hex[:8]  # keeps two reports of one latency at one moment apart
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def exchange(self, *, at: float, lowest: float | None, window: float) -> float | None:
        if self._client is None or self._script is None:
            # Made on first use, inside the event loop that will use it.
            self._client = aioredis.Redis.from_url(self._url, socket_timeout=2.0)
            self._script = self._client.register_script(EXCHANGE_SCRIPT)
        args = [
            repr(at),
            "" if lowest is None else repr(lowest),
            repr(window),
            repr(MAX_WINDOW),
            self._reporter,
        ]
        floor = await self._script(keys=[self._key], args=args)
        return None if floor is None else float(floor)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class LatencyFloor:
    """One sender's view of its provider's floor. `note` and `lowest` are for the pace (no waiting);
    `share`, called about once a second, reports this sender's lowest since and reads the others'."""

    def __init__(self, store: FloorStore, *, wall: TimeSource = time.time):
        self._store = store
        self._wall = wall
        self.lowest: float | None = None  # the floor as last shared, lowered by this sender since
        self._unreported: float | None = None
        self._alone: MemoryFloorStore | None = None  # while the shared store cannot be reached

    def note(self, latency: float) -> None:
        """A round trip's mean latency."""
        self._unreported = latency if self._unreported is None else min(self._unreported, latency)
        self.lowest = latency if self.lowest is None else min(self.lowest, latency)

    @property
    def window(self) -> float:
        if self.lowest is None:
            return UNKNOWN_WINDOW
        return min(MAX_WINDOW, max(MIN_WINDOW, WINDOW_ROUND_TRIPS * self.lowest))

    async def share(self) -> None:
        at, window = self._wall(), self.window
        try:
            floor = await self._store.exchange(at=at, lowest=self._unreported, window=window)
            self._alone = None
        except (RedisError, OSError) as error:
            if self._alone is None:
                log.warning("shared latency floor unreachable (%s): this sender keeps its own", error)
                self._alone = MemoryFloorStore()
            floor = await self._alone.exchange(at=at, lowest=self._unreported, window=window)
        self._unreported = None
        self.lowest = floor

    async def aclose(self) -> None:
        close = getattr(self._store, "aclose", None)
        if close is not None:
            await close()
