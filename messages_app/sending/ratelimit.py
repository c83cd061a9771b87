"""A send rate shared by every sender that shares the bucket's store (no Django here).

A token bucket holds at most `burst` sends and refills at `rate` per second. Where the bucket
lives decides who shares it: `RedisBucket` (one atomic Lua script on the Redis server's clock)
serves every process on every machine, `FileBucket` (a locked file) every process of one machine,
`MemoryBucket` one process. `RateLimiter` hands tokens to coroutines one by one but takes them
from the bucket in small batches, so that a sender at 3,000 sends/s asks Redis about fifty
times a second rather than three thousand.
"""

import asyncio
import fcntl
import logging
import math
import os
import struct
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .clock import TimeSource

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]

# Tokens taken from the shared bucket at once: what the limiter hands out in this many seconds.
BATCH_SECONDS = 0.02
# Tokens of a batch left unused this long are dropped: a process idle for a while must not come
# back with a stock of old tokens on top of a full bucket.
TOKEN_SHELF_LIFE = 0.1


def refill_and_take(
    tokens: float, at: float, now: float, *, rate: float, burst: float, want: int
) -> tuple[int, float, float]:
    """The bucket's arithmetic: (granted, tokens left, seconds until the next token if none is left).

    The same in Lua (`RedisBucket`); `tokens` may start below zero after a penalty.
    """
    tokens = min(burst, tokens + max(0.0, now - at) * rate)
    granted = max(0, min(want, math.floor(tokens)))
    tokens -= granted
    wait = 0.0 if tokens >= 1 else (1 - tokens) / rate
    return granted, tokens, wait


class Bucket(Protocol):
    rate: float
    burst: float

    async def take(self, want: int) -> tuple[int, float]:
        """Take up to `want` tokens: (granted, seconds until one more may be had)."""


class MemoryBucket:
    """One process's bucket; `rate` may change as it runs (a learned rate)."""

    def __init__(self, *, rate: float, burst: float, clock: TimeSource = time.monotonic):
        self.rate, self.burst = rate, burst
        self._clock = clock
        self._tokens = burst
        self._at = clock()

    async def take(self, want: int) -> tuple[int, float]:
        now = self._clock()
        granted, self._tokens, wait = refill_and_take(
            self._tokens, self._at, now, rate=self.rate, burst=self.burst, want=want
        )
        self._at = now
        return granted, wait


class FileBucket:
    """One machine's bucket: its state in a file under an exclusive lock, on the wall clock."""

    _STATE = struct.Struct("<dd")  # tokens, at

    def __init__(self, path: Path, *, rate: float, burst: float, clock: TimeSource = time.time):
        self.rate, self.burst = rate, burst
        self._path = path
        self._clock = clock

    async def take(self, want: int) -> tuple[int, float]:
        # Microseconds under the lock, a few dozen times a second: not worth a thread.
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.pread(fd, self._STATE.size, 0)
            now = self._clock()
            tokens, at = self._STATE.unpack(raw) if len(raw) == self._STATE.size else (self.burst, now)
            granted, tokens, wait = refill_and_take(
                tokens, at, now, rate=self.rate, burst=self.burst, want=want
            )
            os.pwrite(fd, self._STATE.pack(tokens, now), 0)
        finally:
            os.close(fd)  # releases the lock
        return granted, wait


# KEYS[1]: the bucket (a hash of tokens and the time they were counted).
# ARGV: rate, burst, tokens wanted, and optionally the time (tests); otherwise the Redis server's
# clock, which every machine shares. Returns {granted, microseconds until the next token}.
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if not now then
    local clock = redis.call('TIME')
    now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local granted = math.max(0, math.min(want, math.floor(tokens)))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
return {granted, math.ceil(wait * 1000000)}
"""


class RedisBucket:
    """Every machine's bucket: one atomic script per batch of tokens."""

    def __init__(self, url: str, key: str, *, rate: float, burst: float, clock: TimeSource | None = None):
        self.rate, self.burst = rate, burst
        self._url, self._key = url, key
        self._clock = clock  # None: the Redis server's clock
        self._client: aioredis.Redis | None = None
        self._script: AsyncScript | None = None

    async def take(self, want: int) -> tuple[int, float]:
        if self._client is None or self._script is None:
            # Made on first use, inside the event loop that will use it.
            self._client = aioredis.Redis.from_url(self._url, socket_timeout=2.0)
            self._script = self._client.register_script(TAKE_SCRIPT)
        args: list[str | int] = [repr(self.rate), repr(self.burst), want]
        if self._clock is not None:
            args.append(repr(self._clock()))
        granted, wait_us = await self._script(keys=[self._key], args=args)
        return int(granted), int(wait_us) / 1_000_000

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class RateLimiter:
    """Waits until a send may start; tokens come from `bucket` a few at a time.

    If the shared bucket cannot be reached (Redis down), this process goes on at the full rate
    alone rather than not at all, and says so once.
    """

    def __init__(self, bucket: Bucket, *, sleep: Sleep = asyncio.sleep, clock: TimeSource = time.monotonic):
        self.bucket = bucket
        self._sleep = sleep
        self._clock = clock
        self._tokens = 0
        self._tokens_expire_at = 0.0
        self._refill = asyncio.Lock()
        self._fallback: MemoryBucket | None = None

    @property
    def batch(self) -> int:
        return max(1, min(int(self.bucket.rate * BATCH_SECONDS), int(self.bucket.burst)))

    async def acquire(self) -> None:
        while not self._tokens or self._clock() > self._tokens_expire_at:
            async with self._refill:
                if self._tokens and self._clock() <= self._tokens_expire_at:
                    break
                want = self.batch
                granted, wait = await self._take(want)
                self._tokens = granted
                self._tokens_expire_at = self._clock() + TOKEN_SHELF_LIFE
                if not granted:
                    # Until the whole batch is there: one round trip per batch, not per token.
                    await self._sleep(wait + (want - 1) / self.bucket.rate)
        self._tokens -= 1

    async def _take(self, want: int) -> tuple[int, float]:
        try:
            return await self.bucket.take(want)
        except (RedisError, OSError) as error:
            if self._fallback is None:
                log.warning("shared rate limit unreachable (%s): this process limits itself alone", error)
                self._fallback = MemoryBucket(
                    rate=self.bucket.rate, burst=self.bucket.burst, clock=self._clock
                )
            return await self._fallback.take(want)

    async def aclose(self) -> None:
        close = getattr(self.bucket, "aclose", None)
        if close is not None:
            await close()
