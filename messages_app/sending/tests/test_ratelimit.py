"""The shared rate limit: the bucket's arithmetic on an injected clock, and in real Redis."""

import asyncio
import multiprocessing
import os
import time
import uuid

import pytest
import redis

from messages_app.sending.ratelimit import (
    FileBucket,
    MemoryBucket,
    RateLimiter,
    RedisBucket,
    refill_and_take,
)
from messages_app.sending.tests.clock import FakeClock

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def test_a_full_bucket_grants_its_burst_then_one_token_per_interval():
    assert refill_and_take(10.0, 0.0, 0.0, rate=100, burst=10, want=15) == (10, 0.0, pytest.approx(0.01))
    granted, tokens, wait = refill_and_take(0.0, 0.0, 0.035, rate=100, burst=10, want=15)
    assert (granted, tokens, wait) == (3, pytest.approx(0.5), pytest.approx(0.005))


def test_an_idle_bucket_refills_to_its_burst_and_no_further():
    assert refill_and_take(0.0, 0.0, 3600.0, rate=100, burst=10, want=50)[0] == 10


def test_limiter_holds_the_rate_over_a_long_run_on_a_fake_clock():
    clock = FakeClock()
    limiter = RateLimiter(MemoryBucket(rate=300, burst=15, clock=clock), sleep=clock.sleep, clock=clock)

    async def run():
        started = clock()
        for _ in range(3015):
            await limiter.acquire()
        return clock() - started

    elapsed = asyncio.run(run())

    # The first 15 come from the full bucket, the other 3,000 at 300/s.
    assert elapsed == pytest.approx(10.0, rel=0.01)


def test_limiter_takes_tokens_in_batches_not_one_call_each():
    clock = FakeClock()
    calls = []

    class CountingBucket(MemoryBucket):
        async def take(self, want):
            calls.append(want)
            return await super().take(want)

    bucket = CountingBucket(rate=3000, burst=150, clock=clock)
    limiter = RateLimiter(bucket, sleep=clock.sleep, clock=clock)

    async def many_senders():
        async def sender():
            for _ in range(30):
                await limiter.acquire()

        await asyncio.gather(*(sender() for _ in range(100)))

    asyncio.run(many_senders())

    assert sum(calls) >= 3000
    assert len(calls) < 3000 / 20
    assert max(calls) == limiter.batch == 60


def test_cancelled_waiter_holds_no_token_and_blocks_nobody():
    clock = FakeClock()
    limiter = RateLimiter(MemoryBucket(rate=1, burst=1, clock=clock), sleep=asyncio.sleep, clock=clock)

    async def scenario():
        await limiter.acquire()  # the only token
        waiting = asyncio.create_task(limiter.acquire())
        await asyncio.sleep(0.01)
        waiting.cancel()
        clock.advance(1.0)
        await asyncio.wait_for(limiter.acquire(), 1.0)

    asyncio.run(scenario())


def test_file_bucket_is_shared_by_two_limiters_of_one_machine(tmp_path):
    clock = FakeClock()
    path = tmp_path / "bucket"
    first = FileBucket(path, rate=10, burst=5, clock=clock)
    second = FileBucket(path, rate=10, burst=5, clock=clock)

    async def scenario():
        return [await first.take(3), await second.take(3), await second.take(3)]

    (a, _), (b, _), (c, wait) = asyncio.run(scenario())

    assert (a, b, c) == (3, 2, 0)
    assert wait == pytest.approx(0.1)


@pytest.fixture
def redis_key():
    connection = redis.Redis.from_url(REDIS_URL)
    try:
        connection.ping()
    except redis.RedisError:
        if os.environ.get("CI"):
            raise
        pytest.skip("Redis is not running")
    key = f"test:rate-limit:{uuid.uuid4().hex}"
    yield key
    connection.delete(key)
    connection.close()


def test_redis_script_keeps_the_same_arithmetic_on_an_injected_clock(redis_key):
    clock = FakeClock(start=5000.0)
    bucket = RedisBucket(REDIS_URL, redis_key, rate=100, burst=10, clock=clock)

    async def scenario():
        results = [await bucket.take(15)]
        clock.advance(0.035)
        results.append(await bucket.take(15))
        clock.advance(3600)
        results.append(await bucket.take(50))
        await bucket.aclose()
        return results

    full, refilled, idle = asyncio.run(scenario())

    assert full == (10, pytest.approx(0.01, abs=1e-5))
    assert refilled == (3, pytest.approx(0.005, abs=1e-5))
    assert idle[0] == 10


def test_unreachable_redis_falls_back_to_a_local_limit():
    clock = FakeClock()
    bucket = RedisBucket("redis://127.0.0.1:1/0", "unused", rate=10, burst=2)
    limiter = RateLimiter(bucket, sleep=clock.sleep, clock=clock)

    async def scenario():
        started = clock()
        for _ in range(12):
            await limiter.acquire()
        await limiter.aclose()
        return clock() - started

    assert asyncio.run(scenario()) == pytest.approx(1.0, rel=0.05)


def _drain(url: str, key: str, rate: float, burst: float, seconds: float) -> int:
    """One process sending as fast as the shared limit lets it: how many it was allowed."""

    async def run():
        limiter = RateLimiter(RedisBucket(url, key, rate=rate, burst=burst))
        deadline = time.monotonic() + seconds
        count = 0
        try:
            while True:
                await limiter.acquire()
                if time.monotonic() >= deadline:
                    return count
                count += 1
        finally:
            await limiter.aclose()

    return asyncio.run(run())


def test_two_processes_share_one_redis_limit(redis_key):
    rate, burst, seconds = 200.0, 10.0, 2.0
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        counts = pool.starmap(_drain, [(REDIS_URL, redis_key, rate, burst, seconds)] * 2)

    # Together no more than the rate over the run plus one bucket (the processes' start-up is not
    # in `seconds`, so the bound is loose by their start-up skew, well under a second).
    assert sum(counts) <= rate * (seconds + 0.5) + burst
    assert sum(counts) >= rate * seconds * 0.5
    assert min(counts) > 0
