"""The provider gate on a fake clock: breaker, trial request, shared pause, latency margin."""

import asyncio

from messages_app.sending.adaptive import InFlightLimit
from messages_app.sending.gate import ProviderGate
from messages_app.sending.outcomes import ProviderAnswer
from messages_app.sending.pacing import Pacer
from messages_app.sending.tests.clock import FakeClock


def new_gate(clock: FakeClock, **overrides) -> ProviderGate:
    options = {"breaker_threshold": 3, "breaker_pause": 30.0, "auth_pause": 60.0}
    return ProviderGate(clock=clock, **options | overrides)


def test_failures_in_a_row_pause_then_one_trial_request_then_full_speed():
    clock = FakeClock()
    gate = new_gate(clock)
    for _ in range(2):
        gate.record(ProviderAnswer.ERROR, 0.1)
    gate.record(ProviderAnswer.ACCEPTED, 0.1)  # the run is broken: no pause yet
    for _ in range(3):
        gate.record(ProviderAnswer.ERROR, 0.1)

    assert gate.capacity(50, in_flight=0) == 0
    assert not asyncio.run(gate.acquire())
    pause = gate.take_pause_to_publish()
    assert (pause.until, pause.critical) == (1030.0, False)
    assert gate.take_pause_to_publish() is None

    clock.move_to(1030.5)
    assert gate.capacity(50, in_flight=0) == 1  # the trial request
    assert gate.capacity(50, in_flight=1) == 0
    gate.record(ProviderAnswer.ACCEPTED, 0.2)
    assert gate.capacity(50, in_flight=1) == 50


def test_a_failed_trial_request_pauses_again_at_once_and_a_refused_token_is_critical():
    clock = FakeClock()
    gate = new_gate(clock)
    gate.record(ProviderAnswer.AUTH_REFUSED, 0.1)
    assert gate.take_pause_to_publish().critical
    clock.advance(61)
    gate.record(ProviderAnswer.ERROR, 0.1)  # the trial request fails

    assert gate.paused() and gate.paused_until == clock() + 30


def test_a_shared_pause_only_ever_lengthens_the_local_one():
    clock = FakeClock()
    gate = new_gate(clock)
    gate.observe_shared_pause(1100.0)
    gate.observe_shared_pause(1050.0)
    gate.observe_shared_pause(None)

    assert gate.paused_until == 1100.0 and gate.on_trial
    assert gate.take_pause_to_publish() is None  # not ours to publish


def test_rejections_and_cut_requests_do_not_trip_the_breaker_and_latency_percentile():
    gate = new_gate(FakeClock())
    for latency in (0.1, 0.2, 0.3, 2.0):
        gate.record(ProviderAnswer.REJECTED, latency)
    for _ in range(10):
        gate.record(ProviderAnswer.NO_ANSWER, 0.0)

    assert not gate.paused()
    assert gate.latency_percentile(0.99) == 2.0
    assert new_gate(FakeClock()).latency_percentile(0.99) == 0.0


def test_latency_percentile_rises_at_once_and_falls_once_a_tenth_of_the_window_is_new():
    gate = new_gate(FakeClock())  # a window of the last 200 latencies
    for _ in range(200):
        gate.record(ProviderAnswer.ACCEPTED, 0.1)
    assert gate.latency_percentile(0.99) == 0.1
    gate.record(ProviderAnswer.ACCEPTED, 5.0)
    assert gate.latency_percentile(0.99) == 0.1  # one slow answer of 200 is not the 99th percentile
    gate.record(ProviderAnswer.ACCEPTED, 5.0)
    assert gate.latency_percentile(0.99) == 5.0  # two are: the end's margin grows with the next request

    for _ in range(200):
        gate.record(ProviderAnswer.ACCEPTED, 0.1)  # the slow ones leave the window
    assert gate.latency_percentile(0.99) == 0.1
    for _ in range(19):
        gate.record(ProviderAnswer.ACCEPTED, 0.05)
    assert gate.latency_percentile(0.05) == 0.1  # faster answers: too high for a while, never too low
    gate.record(ProviderAnswer.ACCEPTED, 0.05)
    assert gate.latency_percentile(0.05) == 0.05  # sorted again once a tenth of the window is new


def paced_gate(clock: FakeClock, **limit_options) -> ProviderGate:
    limit = InFlightLimit(**({"initial": 4, "minimum": 4, "maximum": 4} | limit_options))
    return new_gate(clock, pacer=Pacer(limit=limit))


def test_429s_never_trip_the_breaker():
    clock = FakeClock()
    gate = paced_gate(clock)

    for _ in range(10):
        assert asyncio.run(gate.acquire())
        gate.record(ProviderAnswer.THROTTLED, 0.01)

    assert not gate.paused()
    assert gate.take_pause_to_publish() is None
    assert gate.pacer.throttled == 10


def test_the_pace_bounds_what_may_be_claimed_and_what_may_start():
    clock = FakeClock()
    gate = paced_gate(clock)

    assert gate.capacity(50, in_flight=0) == 4  # no answer yet: what the in-flight limit lets start

    async def scenario():
        for _ in range(4):
            assert await gate.acquire()
        fifth = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        assert not fifth.done()  # the limit holds it back
        gate.record(ProviderAnswer.ACCEPTED, 0.05)
        return await asyncio.wait_for(fifth, 1)

    assert asyncio.run(scenario())
    # Answers in 50 ms, 80 a second: a round trip's sends and half a second's feed, 44, less 4 in flight.
    assert gate.capacity(50, in_flight=4) == 44 - 4


def test_a_request_waiting_for_its_turn_when_a_pause_begins_does_not_go():
    clock = FakeClock()
    limit = InFlightLimit(initial=1, minimum=1, maximum=1)
    gate = new_gate(clock, breaker_threshold=1, pacer=Pacer(limit=limit))

    async def scenario():
        assert await gate.acquire()
        waiting = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.record(ProviderAnswer.ERROR, 0.1)  # the breaker opens; the slot comes free
        went = await asyncio.wait_for(waiting, 1)
        return went, gate.pacer.in_flight

    assert asyncio.run(scenario()) == (False, 0)
