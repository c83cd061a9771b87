"""The pace of one sender: asked before each request, told after it (no Django here).

    await pacer.acquire()          # a slot under the in-flight limit, then a token of every rate
    ... send ...
    pacer.report(ProviderAnswer.ACCEPTED, latency=seconds)

It combines the adaptive in-flight limit, the configured `PROVIDER_RATE_LIMIT` shared by every
sender (in Redis when there is one, else in a file on this machine), the rate learned from
429s when none is configured, and the provider's Retry-After. A 429 slows everything down here and
is never a failure: the caller gives the message back, untouched.
"""

import asyncio
import math
import time
from collections import deque
from pathlib import Path

from .adaptive import InFlightLimit, LearnedRate
from .clock import TimeSource
from .outcomes import ProviderAnswer
from .ratelimit import Bucket, FileBucket, MemoryBucket, RateLimiter, RedisBucket, Sleep

RATE_LIMIT_KEY = "sender:rate-limit"
# Bucket of the configured rate: a twentieth of a second's sends, so the rate holds over any window.
SHARED_BURST_SECONDS = 0.05
# The learned rate's bucket is smaller still: the provider's own bucket may be small.
LEARNED_BURST_SECONDS = 0.02
# What a sender claims beyond the next round trip's sends: the sends of this many seconds, twice (a
# slow start adds one with every answer), for the claims coming every tenth of a second or so.
FEED_SECONDS = 0.25
CONFIGURED_RATE_TOLERANCE = 0.02  # share of 429s a configured rate is allowed before learning
RETRY_AFTER_CAP = 60.0  # a provider asking for longer is still tried again after this


def pacer_for(
    *,
    initial: int,
    minimum: int,
    maximum: int,
    rate: float | None,
    redis_url: str,
    file_path: Path,
    redis_key: str = RATE_LIMIT_KEY,
    clock: TimeSource = time.monotonic,
    wall: TimeSource = time.time,
) -> "Pacer":
    """A pacer with the adaptive in-flight limit and, when `rate` is set, the rate shared by every
    sender: in Redis at `redis_url`, else in the file (the processes of one machine). `clock` times
    this process's pace, `wall` the moments of its probes; the shared buckets keep the time their
    sharers agree on (Redis's, the wall's)."""
    limit = InFlightLimit(initial=initial, minimum=minimum, maximum=maximum, clock=clock, wall=wall)
    if not rate:
        return Pacer(limit=limit, clock=clock)
    burst = max(1.0, rate * SHARED_BURST_SECONDS)
    bucket: Bucket
    if redis_url:
        bucket = RedisBucket(redis_url, redis_key, rate=rate, burst=burst)
    else:
        bucket = FileBucket(file_path, rate=rate, burst=burst)
    learned = LearnedRate(clock=clock)
    # Sending right at the configured rate meets a stray 429 now and then (requests bunch up on
    # the way): only a steady share of them means the provider allows less than configured.
    learned.tolerance = CONFIGURED_RATE_TOLERANCE
    return Pacer(limit=limit, shared=RateLimiter(bucket, clock=clock), learned=learned, clock=clock)


# The provider answered in time, whatever it said of the message: its latency tells the pace.
ANSWERED = frozenset({ProviderAnswer.ACCEPTED, ProviderAnswer.REJECTED, ProviderAnswer.AUTH_REFUSED})


class Pacer:
    def __init__(
        self,
        *,
        limit: InFlightLimit,
        shared: RateLimiter | None = None,
        learned: LearnedRate | None = None,
        clock: TimeSource = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ):
        self.limit = limit
        self.shared = shared
        self.learned = learned or LearnedRate(clock=clock)
        self._learned_limiter: RateLimiter | None = None
        self._clock, self._sleep = clock, sleep
        self.in_flight = 0  # slots taken, including those still waiting for the rate
        self.sending = 0  # requests on their way to the provider
        self._slot_waiters: deque[asyncio.Future] = deque()
        self._resume_at = 0.0  # clock time before which no request starts (Retry-After)
        self.throttled = 0
        self._follow_learned_rate()

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()

    @property
    def max_in_flight(self) -> int:
        return self.limit.maximum

    @property
    def backlog(self) -> int:
        """Messages worth holding claimed: what goes out over the next round trip (latency × rate)
        and a little more to feed it until the next claims. A message claimed waits behind those
        claimed before it, so a new mailing waits behind the backlog."""
        limit, round_trip = self.limit.limit, self.limit.latency
        if not round_trip:  # no answer yet
            return limit
        rate = limit / round_trip  # as fast as the in-flight limit lets requests out
        most = math.inf
        if self.shared is not None or self._learned_limiter is not None:
            # A rate may bind first: room to double what this sender got lately, so that its share
            # can grow, down to the floor of the in-flight limit; never more than twice the limit,
            # since what is claimed waits for the rate, and a new mailing behind it.
            rate = min(rate, 2 * max(self.learned.recent_rate(), self.limit.minimum / round_trip))
            most = 2 * limit
        return max(self.limit.minimum, math.ceil(min(most, rate * (round_trip + 2 * FEED_SECONDS))))

    async def acquire(self) -> None:
        """Wait until a request may start. Cancelled, it holds nothing."""
        await self._take_slot()
        try:
            if self._resume_at > self._clock():
                await self._sleep(self._resume_at - self._clock())
            if self.shared is not None:
                await self.shared.acquire()
            if self._learned_limiter is not None:
                await self._learned_limiter.acquire()
        except BaseException:
            self._release_slot()
            raise
        self.sending += 1

    def report(
        self, answer: ProviderAnswer, *, latency: float = 0.0, retry_after: float | None = None
    ) -> None:
        """What became of the request an `acquire` let through (NO_ANSWER: it never went, or we gave
        up first, which says nothing of the provider)."""
        if answer in ANSWERED:
            # Slots held while waiting for the rate count as use: the limit must not be what binds.
            self.limit.on_answer(latency, in_flight=self.in_flight)
            self.learned.on_accepted()
        elif answer is ProviderAnswer.THROTTLED:
            self.throttled += 1
            self.learned.on_throttled()
            if self.learned.rate is None:
                # Until a rate is learned, fewer in flight is all that slows us down; after, the
                # rate does, and the in-flight limit stays what the latency needs.
                self.limit.on_overload()
            if retry_after:
                self._resume_at = max(self._resume_at, self._clock() + min(retry_after, RETRY_AFTER_CAP))
        elif answer is ProviderAnswer.ERROR:
            self.limit.on_overload()
        self._follow_learned_rate()
        self.sending -= 1
        self._release_slot()

    def _follow_learned_rate(self) -> None:
        rate = self.learned.rate
        if rate is None:
            return
        if self._learned_limiter is None:
            bucket: Bucket = MemoryBucket(rate=rate, burst=1.0, clock=self._clock)
            self._learned_limiter = RateLimiter(bucket, sleep=self._sleep, clock=self._clock)
        bucket = self._learned_limiter.bucket
        bucket.rate, bucket.burst = rate, max(1.0, rate * LEARNED_BURST_SECONDS)

    # --- slots under the in-flight limit: a semaphore whose size moves --------------------------

    async def _take_slot(self) -> None:
        if self.in_flight < self.limit.limit and not self._slot_waiters:
            self.in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter  # whoever resolves it has counted the slot as ours
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release_slot()
            elif waiter in self._slot_waiters:
                self._slot_waiters.remove(waiter)
            raise

    def _release_slot(self) -> None:
        self.in_flight -= 1
        while self._slot_waiters and self.in_flight < self.limit.limit:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
