"""The latency floor a provider's senders share: its window, and each place it is kept."""

import asyncio
import logging

from messages_app.sending.floor import (
    MIN_WINDOW,
    FileFloorStore,
    LatencyFloor,
    MemoryFloorStore,
    RedisFloorStore,
)
from messages_app.sending.tests.clock import FakeClock

from .conftest import REDIS_URL


def share_all(*floors: LatencyFloor) -> None:
    async def share() -> None:
        for floor in floors:
            await floor.share()

    asyncio.run(share())


def test_a_sender_hears_the_lowest_latency_another_reported_within_the_window():
    clock = FakeClock(start=1000.0)
    store = MemoryFloorStore()
    first, second = LatencyFloor(store, wall=clock), LatencyFloor(store, wall=clock)
    first.note(0.08)
    first.note(0.05)
    second.note(0.3)  # started beside a queue: never saw the provider's own latency

    share_all(first, second)

    assert second.lowest == 0.05
    clock.move_to(1000.0 + MIN_WINDOW - 1)
    second.note(0.4)
    share_all(second)
    assert second.lowest == 0.05
    # Once the window has passed, the lowest of what was reported since: a provider slower for good.
    clock.move_to(1000.0 + MIN_WINDOW + 1)
    share_all(first, second)
    assert first.lowest == second.lowest == 0.4


def test_the_window_is_a_number_of_round_trips_within_bounds():
    floor = LatencyFloor(MemoryFloorStore(), wall=FakeClock(start=0.0))
    floor.note(0.05)
    assert floor.window == MIN_WINDOW
    floor.note(0.01)
    assert floor.window == MIN_WINDOW
    slow = LatencyFloor(MemoryFloorStore(), wall=FakeClock(start=0.0))
    slow.note(2.0)
    assert slow.window == 80.0


def test_processes_of_one_machine_share_it_through_a_file(tmp_path):
    clock = FakeClock(start=50.0)
    path = tmp_path / "floor"
    first = LatencyFloor(FileFloorStore(path), wall=clock)
    second = LatencyFloor(FileFloorStore(path), wall=clock)
    first.note(0.07)
    second.note(0.2)

    share_all(first, second, first)

    assert first.lowest == second.lowest == 0.07


def test_a_file_cut_short_starts_the_floor_over(tmp_path):
    path = tmp_path / "floor"
    path.write_bytes(b"[[50.0, 0.0")
    floor = LatencyFloor(FileFloorStore(path), wall=FakeClock(start=50.0))
    floor.note(0.2)

    share_all(floor)

    assert floor.lowest == 0.2


def test_senders_on_every_machine_share_it_in_redis(redis_key):
    clock = FakeClock(start=2000.0)
    first = LatencyFloor(RedisFloorStore(REDIS_URL, redis_key), wall=clock)
    second = LatencyFloor(RedisFloorStore(REDIS_URL, redis_key), wall=clock)

    async def scenario() -> None:
        first.note(0.06)
        second.note(0.06)  # the same latency at the same moment: two reports, not one
        second.note(0.25)
        await first.share()
        await second.share()
        assert second.lowest == 0.06
        clock.move_to(2000.0 + MIN_WINDOW + 1)
        second.note(0.25)
        await second.share()
        assert second.lowest == 0.25
        for floor in (first, second):
            await floor.aclose()

    asyncio.run(scenario())


def test_unreachable_redis_leaves_each_sender_its_own_floor(caplog):
    clock = FakeClock(start=10.0)
    floor = LatencyFloor(RedisFloorStore("redis://127.0.0.1:1/0", "unused"), wall=clock)
    floor.note(0.1)

    with caplog.at_level(logging.WARNING):
        share_all(floor)
        share_all(floor)
        clock.move_to(10.0 + MIN_WINDOW + 1)
        floor.note(0.3)
        share_all(floor)

    assert floor.lowest == 0.3  # its own window still passes
    warnings = [record for record in caplog.records if "latency floor unreachable" in record.message]
    assert len(warnings) == 1
