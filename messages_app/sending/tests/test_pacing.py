"""The adaptive in-flight limit, the learned rate and the pacer that combines them, on a fake clock."""

import asyncio
import math
from collections.abc import Callable

import pytest

from messages_app.sending.adaptive import (
    BACKOFF,
    GROWTH_PER_ANSWER,
    MIN_ROUND_TRIP_ANSWERS,
    PROBE_EVERY,
    REBASE_AFTER_CUTS,
    REBASE_AT_MOST,
    STRETCH_AFTER_HELD,
    InFlightLimit,
    LearnedRate,
)
from messages_app.sending.outcomes import ProviderAnswer
from messages_app.sending.pacing import Pacer, pacer_for
from messages_app.sending.ratelimit import FileBucket, RedisBucket
from messages_app.sending.tests.clock import FakeClock


def limit(clock, **options) -> InFlightLimit:
    """A limit already past its slow start, at its initial value (100 unless options say otherwise)."""
    adaptive = InFlightLimit(**({"initial": 100, "minimum": 10, "maximum": 1000, "clock": clock} | options))
    adaptive.value = adaptive.slow_start_until
    return adaptive


def test_limit_starts_at_half_its_initial_value_and_doubles_every_round_trip_up_to_it():
    adaptive = InFlightLimit(initial=200, minimum=10, maximum=1000, clock=FakeClock())
    assert adaptive.limit == 100

    for expected in (200,):
        for _ in range(adaptive.limit):  # one round trip: every request in flight answers
            adaptive.on_answer(0.5, in_flight=adaptive.limit)
        assert adaptive.limit == expected
    for _ in range(200):
        adaptive.on_answer(0.5, in_flight=adaptive.limit)

    assert adaptive.limit == 250  # then a quarter per round trip


def test_slow_start_begins_at_the_floor_when_half_is_below_it():
    assert InFlightLimit(initial=30, minimum=20, maximum=100).limit == 20


def test_limit_grows_by_about_a_quarter_per_round_trip_while_latency_is_flat():
    clock = FakeClock()
    adaptive = limit(clock)

    for _ in range(100):
        adaptive.on_answer(0.5, in_flight=100)

    assert adaptive.value == pytest.approx(125)


def test_limit_does_not_grow_when_it_is_not_used():
    adaptive = limit(FakeClock())

    for _ in range(100):
        adaptive.on_answer(0.5, in_flight=20)

    assert adaptive.limit == 100


def test_limit_stops_at_its_ceiling():
    adaptive = limit(FakeClock(), maximum=120)

    for _ in range(1000):
        adaptive.on_answer(0.5, in_flight=120)

    assert adaptive.limit == 120


def answered_at(adaptive: InFlightLimit, latency: float, times: int, *, in_flight: int = 100) -> None:
    for _ in range(times):
        adaptive.on_answer(latency, in_flight=in_flight)


def test_latency_half_again_over_the_best_round_trip_cuts_the_limit_once_per_round_trip():
    adaptive = limit(FakeClock())
    answered_at(adaptive, 0.05, 100, in_flight=10)  # a round trip (of the limit's 100 answers) idle

    answered_at(adaptive, 0.5, 100, in_flight=10)  # the provider is queueing our requests
    assert adaptive.limit == 90
    answered_at(adaptive, 0.5, 89, in_flight=10)
    assert adaptive.limit == 90  # the answers of one round trip say the same thing once

    adaptive.on_answer(0.5, in_flight=10)
    assert adaptive.limit == 81


def held_after_a_climb(adaptive: InFlightLimit) -> int:
    """Latency 1.4 times its best: the round trip that shows it still grew (it is judged at its end)."""
    answered_at(adaptive, 0.1, 100)
    answered_at(adaptive, 0.14, 125)
    return adaptive.limit


def round_trips(adaptive: InFlightLimit, count: int, latency: Callable[[float], float]) -> None:
    """`count` round trips, every request in flight answering, in `latency(limit)` seconds."""
    for _ in range(count):
        answered_at(adaptive, latency(adaptive.limit), adaptive.limit, in_flight=adaptive.limit)


def test_latency_climbing_by_less_than_half_holds_the_limit_until_a_stretch():
    adaptive = limit(FakeClock())
    held = held_after_a_climb(adaptive)

    round_trips(adaptive, STRETCH_AFTER_HELD - 1, lambda _: 0.14)

    assert adaptive.limit == held
    assert adaptive.baseline == pytest.approx(0.1)


def test_a_stretch_whose_latency_follows_what_is_in_flight_goes_back_to_what_was_held():
    adaptive = limit(FakeClock())
    held = held_after_a_climb(adaptive)
    round_trips(adaptive, STRETCH_AFTER_HELD, lambda _: 0.14)  # the last one grew it
    assert adaptive.limit > held * 1.2

    round_trips(adaptive, 1, lambda in_flight: 0.14 * in_flight / held)  # our own queue

    assert adaptive.limit == held
    assert adaptive.baseline == pytest.approx(0.1)


def test_a_stretch_whose_latency_stays_makes_it_the_new_baseline_and_the_limit_grows_again():
    adaptive = limit(FakeClock())
    held_after_a_climb(adaptive)
    round_trips(adaptive, STRETCH_AFTER_HELD + 1, lambda _: 0.14)  # the stretch's latency is not ours
    assert adaptive.baseline == pytest.approx(0.14)
    stretched = adaptive.limit

    round_trips(adaptive, 1, lambda _: 0.14)

    assert adaptive.limit == pytest.approx(stretched * 1.25, abs=1)


def test_the_baseline_is_the_best_round_trip_mean_not_the_fastest_answer():
    adaptive = limit(FakeClock(), maximum=100)
    spread = [0.25 + 0.5 * n / 99 for n in range(100)]  # half to one and a half of 0.5 s

    for _ in range(20):
        for latency in spread:
            adaptive.on_answer(latency, in_flight=100)

    assert adaptive.baseline == pytest.approx(0.5)
    assert adaptive.limit == 100


def test_overload_cuts_down_to_the_floor_and_no_further():
    clock = FakeClock()
    adaptive = limit(clock, initial=500)

    for _ in range(100):
        adaptive.on_overload()
        clock.advance(1.0)

    assert adaptive.limit == 10


def test_a_provider_slower_for_good_becomes_the_new_baseline_and_the_limit_grows_again():
    adaptive = limit(FakeClock())
    answered_at(adaptive, 0.05, 100, in_flight=10)
    while adaptive.baseline < 0.5:  # ten times the latency: cut after cut, and it does not fall
        answered_at(adaptive, 0.5, adaptive.limit, in_flight=10)
    assert adaptive.limit == 59  # five cuts
    answered_at(adaptive, 0.5, adaptive.limit, in_flight=10)  # a round trip at the new normal
    before = adaptive.value

    answered_at(adaptive, 0.5, 10, in_flight=100)

    assert adaptive.value == pytest.approx(before + 10 * GROWTH_PER_ANSWER)


def test_latency_that_falls_with_the_cuts_is_our_own_queue_and_keeps_its_baseline():
    adaptive = limit(FakeClock())
    answered_at(adaptive, 0.05, 100, in_flight=10)

    for _ in range(8):  # latency follows what is in flight, as in a queue
        answered_at(adaptive, 0.5 * adaptive.limit / 100, adaptive.limit, in_flight=10)

    assert adaptive.baseline == pytest.approx(0.05)


def probe(clock: FakeClock, adaptive: InFlightLimit, latency: float, *, at: float | None = None) -> None:
    """The probe moment `at` (by default the next of 5 s) comes; every sender's requests from before
    are answered, then those sent after, each in `latency`."""
    moment = (clock() // PROBE_EVERY + 1) * PROBE_EVERY if at is None else at
    clock.advance(moment + 0.01 - clock())
    adaptive.on_answer(latency, in_flight=adaptive.limit)  # the first answer after the moment
    assert adaptive.limit == adaptive.minimum
    adaptive.on_answer(latency, in_flight=adaptive.minimum)  # drained
    clock.advance(latency + 1e-6)
    answered_at(adaptive, latency, MIN_ROUND_TRIP_ANSWERS, in_flight=adaptive.minimum)


def test_at_a_probe_moment_the_limit_drops_to_its_floor_until_requests_sent_after_have_answered():
    clock = FakeClock(start=1005.5)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)  # the fastest round trip sets the probes' period: 5 s
    answered_at(adaptive, 0.3, 200)  # queued behind other senders' requests
    before = adaptive.limit

    clock.advance(PROBE_EVERY)  # 1010.5 s: half a second past the moment
    adaptive.on_answer(0.3, in_flight=100)
    assert adaptive.limit == adaptive.minimum
    answered_at(adaptive, 0.3, 50, in_flight=60)  # still draining
    adaptive.on_answer(0.3, in_flight=adaptive.minimum)
    answered_at(adaptive, 0.3, 50, in_flight=adaptive.minimum)  # sent before it was drained
    assert adaptive.limit == adaptive.minimum
    clock.advance(0.05 + 1e-6)
    answered_at(adaptive, 0.05, MIN_ROUND_TRIP_ANSWERS - 1, in_flight=adaptive.minimum)
    assert adaptive.limit == adaptive.minimum

    adaptive.on_answer(0.05, in_flight=adaptive.minimum)

    assert adaptive.limit == before
    assert adaptive.baseline == pytest.approx(0.05)  # the provider's own latency, with no queue of ours


def test_a_probe_sets_the_baseline_even_higher_when_the_provider_is_slower_for_good():
    clock = FakeClock(start=1006.0)  # its probe at 1010 s, a moment every sender shares
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)

    probe(clock, adaptive, 0.3)

    assert adaptive.baseline == pytest.approx(0.3)


def test_a_probe_brings_a_ratcheted_baseline_down_near_its_latency_and_keeps_one_within():
    clock = FakeClock(start=1001.0)
    ratcheted, within = limit(clock), limit(clock)
    answered_at(ratcheted, 0.04, 100)
    answered_at(within, 0.045, 100)
    while ratcheted.baseline < 0.5:  # cut after cut, the latency not falling: rebased on it
        answered_at(ratcheted, 0.5, ratcheted.limit, in_flight=10)

    probe(clock, ratcheted, 0.04)
    probe(clock, within, 0.04)

    assert ratcheted.baseline == pytest.approx(0.04 * REBASE_AT_MOST)
    assert within.baseline == pytest.approx(0.045)


def test_once_a_probe_finds_the_provider_slower_the_probes_come_as_seldom_as_its_latency_needs():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)  # a probe every 5 s
    probe(clock, adaptive, 5.0)  # slower for good: a round trip is 5 s now

    limits = []
    for _ in range(20):
        clock.advance(PROBE_EVERY)
        adaptive.on_answer(5.0, in_flight=adaptive.limit)
        limits.append(adaptive.limit)

    assert adaptive.minimum not in limits  # the next probe is 100 round trips away


def test_a_rebase_past_the_bound_brings_the_next_probe_to_the_next_moment_of_the_shortest_period():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.5, 100)  # a probe every 80 s
    probe(clock, adaptive, 0.5, at=1040.0)
    clock.advance(20.0)  # 1061.5 s
    for _ in range(REBASE_AFTER_CUTS):  # four times slower, and cuts do not bring it down
        answered_at(adaptive, 2.0, adaptive.limit, in_flight=10)
    assert adaptive.baseline == pytest.approx(0.5 * REBASE_AT_MOST)
    adaptive.on_answer(2.0, in_flight=adaptive.limit)
    assert adaptive.limit > adaptive.minimum  # not for 1060 s, a moment already past

    clock.advance(PROBE_EVERY)
    adaptive.on_answer(2.0, in_flight=adaptive.limit)

    assert adaptive.limit == adaptive.minimum  # at 1065 s, not 1120 s


def test_only_a_probe_every_sender_surely_shares_may_find_the_provider_slower():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.03, 100)  # a probe every 5 s; a sender a little slower: every 10 s
    probe(clock, adaptive, 0.03)  # 1005 s: the first
    probe(clock, adaptive, 0.035)  # 1010 s: a moment of 10 s too, every sender probes
    assert adaptive.baseline == pytest.approx(0.035)

    probe(clock, adaptive, 0.045)  # 1015 s: maybe alone, beside the others' queue
    assert adaptive.baseline == pytest.approx(0.035)
    probe(clock, adaptive, 0.045)  # 1020 s: every sender again
    assert adaptive.baseline == pytest.approx(0.045)


def test_a_first_probe_not_every_sender_shares_does_not_raise_the_baseline():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)

    probe(clock, adaptive, 0.06)  # 1005 s: not a moment of 10 s, maybe alone beside the others' queue

    assert adaptive.baseline == pytest.approx(0.04)


def test_a_moment_slept_through_is_skipped_and_the_next_one_probed():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)

    clock.advance(12.0)  # 1013 s: idle since before 1005 and 1010
    adaptive.on_answer(0.04, in_flight=adaptive.limit)
    assert adaptive.limit > adaptive.minimum  # the others probed at 1010 s and are done
    clock.advance(2.01)
    adaptive.on_answer(0.04, in_flight=adaptive.limit)
    assert adaptive.limit == adaptive.minimum  # 1015 s


def test_an_overload_during_a_probe_cuts_what_the_limit_comes_back_to():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)
    before = adaptive.value

    clock.advance(4.5)  # 1005.5 s: a probe
    adaptive.on_answer(0.04, in_flight=100)
    assert adaptive.limit == adaptive.minimum
    adaptive.on_overload()  # a timeout meanwhile
    adaptive.on_answer(0.04, in_flight=adaptive.minimum)  # drained
    clock.advance(1.0)
    answered_at(adaptive, 0.04, MIN_ROUND_TRIP_ANSWERS, in_flight=adaptive.minimum)

    assert adaptive.limit == int(before * BACKOFF)


def test_senders_started_apart_probe_at_the_same_moments_of_the_wall_clock():
    clock = FakeClock(start=1001.0)
    first = limit(clock)
    answered_at(first, 0.04, 100)
    clock.advance(2.5)
    second = limit(clock)
    answered_at(second, 0.04, 100)
    probing_since = {}

    for _ in range(100):
        clock.advance(0.1)
        for name, adaptive in (("first", first), ("second", second)):
            adaptive.on_answer(0.04, in_flight=adaptive.limit)
            if adaptive.limit == adaptive.minimum:
                probing_since.setdefault(name, clock())

    assert probing_since["first"] == probing_since["second"]
    assert 1005.0 <= probing_since["first"] < 1005.1


def test_a_rebase_goes_no_higher_than_a_little_over_the_last_probe():
    clock = FakeClock(start=1001.0)
    adaptive = limit(clock)
    answered_at(adaptive, 0.04, 100)
    probe(clock, adaptive, 0.04)

    for _ in range(REBASE_AFTER_CUTS):  # cut after cut, and the latency does not fall
        answered_at(adaptive, 0.5, adaptive.limit, in_flight=10)

    assert adaptive.baseline == pytest.approx(0.04 * REBASE_AT_MOST)
    probe(clock, adaptive, 0.5)  # the next probe says whether it is the provider's
    assert adaptive.baseline == pytest.approx(0.5)


def test_learned_rate_is_none_until_the_first_429_then_nine_tenths_of_what_was_accepted():
    clock = FakeClock()
    learned = LearnedRate(clock=clock)
    for _ in range(300):
        clock.advance(1 / 300)
        learned.on_accepted()
    assert learned.rate is None

    learned.on_throttled()

    assert learned.rate == pytest.approx(270, rel=0.02)


def learned_after_a_second_at_100_per_s(clock: FakeClock) -> LearnedRate:
    learned = LearnedRate(clock=clock)
    for _ in range(100):
        clock.advance(0.01)
        learned.on_accepted()
    learned.on_throttled()
    return learned


def test_learned_rate_ignores_the_429s_of_requests_already_on_their_way():
    clock = FakeClock()
    learned = learned_after_a_second_at_100_per_s(clock)
    first = learned.rate

    learned.on_throttled()
    learned.on_throttled()

    assert learned.rate == first


def test_learned_rate_grows_a_tenth_a_second_without_429():
    clock = FakeClock()
    learned = learned_after_a_second_at_100_per_s(clock)
    start = learned.rate

    for _ in range(90 * 10):  # ten seconds at 90/s
        clock.advance(1 / 90)
        learned.on_accepted()

    assert learned.rate == pytest.approx(start * math.exp(0.1 * 10), rel=0.01)


def pacer(clock, **limit_options) -> Pacer:
    return Pacer(limit=limit(clock, **limit_options), clock=clock, sleep=clock.sleep)


def test_pacer_holds_requests_over_the_in_flight_limit_until_one_returns():
    clock = FakeClock()
    gate = pacer(clock, initial=2, minimum=1, maximum=2)

    async def scenario():
        await gate.acquire()
        await gate.acquire()
        third = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        assert not third.done()
        gate.report(ProviderAnswer.ACCEPTED, latency=0.1)
        await asyncio.wait_for(third, 1)
        return gate.in_flight

    assert asyncio.run(scenario()) == 2


def test_cancelled_acquire_holds_no_slot():
    clock = FakeClock()
    gate = pacer(clock, initial=1, minimum=1, maximum=1)

    async def scenario():
        await gate.acquire()
        waiting = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)
        gate.report(ProviderAnswer.NO_ANSWER)
        await asyncio.wait_for(gate.acquire(), 1)
        return gate.in_flight

    assert asyncio.run(scenario()) == 1


def test_retry_after_holds_every_request_of_the_pacer_that_long():
    clock = FakeClock()
    gate = pacer(clock)

    async def scenario():
        await gate.acquire()
        gate.report(ProviderAnswer.THROTTLED, retry_after=3.0)
        started = clock()
        await gate.acquire()
        return clock() - started

    assert asyncio.run(scenario()) == pytest.approx(3.0)


def test_after_a_429_the_pacer_sends_at_the_learned_rate():
    clock = FakeClock()
    gate = pacer(clock, initial=50)

    async def scenario():
        for _ in range(200):  # 200/s accepted for a second
            await gate.acquire()
            clock.advance(0.005)
            gate.report(ProviderAnswer.ACCEPTED, latency=0.005)
        await gate.acquire()
        gate.report(ProviderAnswer.THROTTLED)
        started = clock()
        for _ in range(360):
            await gate.acquire()
            gate.report(ProviderAnswer.ACCEPTED, latency=0.0)
        return 360 / (clock() - started)

    rate = asyncio.run(scenario())

    assert 170 <= rate <= 210  # 9/10 of 200, grown a tenth a second meanwhile


def test_429s_shrink_the_in_flight_limit_until_a_rate_is_learned_and_timeouts_always():
    clock = FakeClock()
    gate = pacer(clock)

    async def scenario():
        await gate.acquire()
        gate.report(ProviderAnswer.THROTTLED)  # nothing accepted yet: fewer in flight
        after_first_429 = gate.limit.value
        clock.advance(1)
        await gate.acquire()
        gate.report(ProviderAnswer.ACCEPTED, latency=0.05)
        clock.advance(1)
        await gate.acquire()
        gate.report(ProviderAnswer.THROTTLED)  # a rate is learned: it slows us down instead
        after_learning = gate.limit.value
        clock.advance(1)
        await gate.acquire()
        gate.report(ProviderAnswer.ERROR)
        return after_first_429, after_learning, gate.limit.value

    after_first_429, after_learning, after_timeout = asyncio.run(scenario())

    assert after_first_429 == pytest.approx(90)
    assert after_learning == pytest.approx(90)
    assert after_timeout == pytest.approx(81)


def test_configured_rate_is_shared_through_redis_when_there_is_one_else_a_file(tmp_path):
    options = {"initial": 200, "minimum": 8, "maximum": 1000, "file_path": tmp_path / "bucket"}
    assert pacer_for(rate=None, redis_url="redis://x", **options).shared is None
    assert isinstance(pacer_for(rate=300.0, redis_url="redis://x", **options).shared.bucket, RedisBucket)

    bucket = pacer_for(rate=300.0, redis_url="", **options).shared.bucket

    assert isinstance(bucket, FileBucket)
    assert (bucket.rate, bucket.burst) == (300.0, 15.0)


def test_with_a_tolerance_stray_429s_teach_nothing_and_a_steady_share_does():
    clock = FakeClock()
    learned = LearnedRate(clock=clock)
    learned.tolerance = 0.02
    for _ in range(200):
        clock.advance(0.01)
        learned.on_accepted()

    learned.on_throttled()
    assert learned.rate is None

    for _ in range(5):
        learned.on_throttled()
    assert learned.rate == pytest.approx(90, rel=0.05)


def test_a_pacer_given_a_learned_rate_paces_from_its_first_request():
    clock = FakeClock()
    learned = LearnedRate(clock=clock)
    learned.rate = 10.0
    gate = Pacer(limit=limit(clock), learned=learned, clock=clock, sleep=clock.sleep)

    async def scenario():
        started = clock()
        for _ in range(21):
            await gate.acquire()
        return clock() - started

    assert asyncio.run(scenario()) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize(("latency", "backlog"), [(5.0, 220), (0.5, 400), (0.05, 2200)])
def test_backlog_is_a_round_trip_of_sends_and_the_feed_until_the_next_claims(latency, backlog):
    clock = FakeClock()
    paced = pacer(clock, initial=200)
    assert paced.backlog == 200  # before any answer: what may start now

    for _ in range(200):
        paced.limit.on_answer(latency, in_flight=50)  # a limit not in use keeps its value

    assert paced.backlog == backlog  # 200 / 5 s × (5 s + 2 × 0.25 s) = 220


def test_with_a_rate_the_backlog_is_at_most_twice_the_limit():
    clock = FakeClock()
    learned = LearnedRate(clock=clock)
    learned.rate = 20.0  # far below what 100 in flight at 50 ms would send
    paced = Pacer(limit=limit(clock), learned=learned, clock=clock, sleep=clock.sleep)

    answered_at(paced.limit, 0.05, 100, in_flight=10)

    assert paced.backlog == 2 * paced.limit.limit  # what the rate lets out is claimed a little at a time
