"""The provider gate on a fake clock: breaker, probe, shared pause, latency margin."""

import asyncio

from messages_app.sending.adaptive import InFlightLimit
from messages_app.sending.gate import ProviderAnswer, ProviderGate
from messages_app.sending.pacing import Pacer


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def gate(clock: Clock, **overrides) -> ProviderGate:
    options = {"breaker_threshold": 3, "breaker_pause": 30.0, "auth_pause": 60.0}
    return ProviderGate(clock=clock, **options | overrides)


def test_failures_in_a_row_pause_then_one_probe_then_full_speed():
    clock = Clock()
    provider = gate(clock)
    for _ in range(2):
        provider.record(ProviderAnswer.ERROR, 0.1)
    provider.record(ProviderAnswer.ACCEPTED, 0.1)  # the run is broken: no pause yet
    for _ in range(3):
        provider.record(ProviderAnswer.ERROR, 0.1)

    assert provider.capacity(50, in_flight=0) == 0
    assert not asyncio.run(provider.acquire())
    pause = provider.take_pause_to_publish()
    assert (pause.until, pause.critical) == (1030.0, False)
    assert provider.take_pause_to_publish() is None

    clock.now = 1030.5
    assert provider.capacity(50, in_flight=0) == 1  # the probe
    assert provider.capacity(50, in_flight=1) == 0
    provider.record(ProviderAnswer.ACCEPTED, 0.2)
    assert provider.capacity(50, in_flight=1) == 50


def test_a_failed_probe_pauses_again_at_once_and_a_refused_token_is_critical():
    clock = Clock()
    provider = gate(clock)
    provider.record(ProviderAnswer.AUTH_REFUSED, 0.1)
    assert provider.take_pause_to_publish().critical
    clock.now += 61
    provider.record(ProviderAnswer.ERROR, 0.1)  # the probe fails

    assert provider.paused() and provider.paused_until == clock.now + 30


def test_a_shared_pause_only_ever_lengthens_the_local_one():
    clock = Clock()
    provider = gate(clock)
    provider.observe_shared_pause(1100.0)
    provider.observe_shared_pause(1050.0)
    provider.observe_shared_pause(None)

    assert provider.paused_until == 1100.0 and provider.probing
    assert provider.take_pause_to_publish() is None  # not ours to publish


def test_rejections_and_cut_requests_do_not_trip_the_breaker_and_latency_percentile():
    provider = gate(Clock())
    for latency in (0.1, 0.2, 0.3, 2.0):
        provider.record(ProviderAnswer.REJECTED, latency)
    for _ in range(10):
        provider.record(ProviderAnswer.NO_ANSWER, 0.0)

    assert not provider.paused()
    assert provider.latency_percentile(0.99) == 2.0
    assert gate(Clock()).latency_percentile(0.99) == 0.0


def test_latency_percentile_rises_at_once_and_falls_once_a_tenth_of_the_window_is_new():
    provider = gate(Clock())  # a window of the last 200 latencies
    for _ in range(200):
        provider.record(ProviderAnswer.ACCEPTED, 0.1)
    assert provider.latency_percentile(0.99) == 0.1
    provider.record(ProviderAnswer.ACCEPTED, 5.0)
    assert provider.latency_percentile(0.99) == 0.1  # one slow answer of 200 is not the 99th percentile
    provider.record(ProviderAnswer.ACCEPTED, 5.0)
    assert provider.latency_percentile(0.99) == 5.0  # two are: the end's margin grows with the next request

    for _ in range(200):
        provider.record(ProviderAnswer.ACCEPTED, 0.1)  # the slow ones leave the window
    assert provider.latency_percentile(0.99) == 0.1
    for _ in range(19):
        provider.record(ProviderAnswer.ACCEPTED, 0.05)
    assert provider.latency_percentile(0.05) == 0.1  # faster answers: too high for a while, never too low
    provider.record(ProviderAnswer.ACCEPTED, 0.05)
    assert provider.latency_percentile(0.05) == 0.05  # sorted again once a tenth of the window is new


def paced_gate(clock: Clock, **limit_options) -> ProviderGate:
    limit = InFlightLimit(**({"initial": 4, "minimum": 4, "maximum": 4} | limit_options))
    return gate(clock, pacer=Pacer(limit=limit))


def test_429s_never_trip_the_breaker():
    clock = Clock()
    provider = paced_gate(clock)

    for _ in range(10):
        assert asyncio.run(provider.acquire())
        provider.record(ProviderAnswer.THROTTLED, 0.01)

    assert not provider.paused()
    assert provider.take_pause_to_publish() is None
    assert provider.pacer.throttled == 10


def test_the_pace_bounds_what_may_be_claimed_and_what_may_start():
    clock = Clock()
    provider = paced_gate(clock)

    assert provider.capacity(50, in_flight=0) == 4  # no answer yet: what the in-flight limit lets start

    async def scenario():
        for _ in range(4):
            assert await provider.acquire()
        fifth = asyncio.create_task(provider.acquire())
        await asyncio.sleep(0)
        assert not fifth.done()  # the limit holds it back
        provider.record(ProviderAnswer.ACCEPTED, 0.05)
        return await asyncio.wait_for(fifth, 1)

    assert asyncio.run(scenario())
    # Answers in 50 ms: a round trip's sends and the feed's are more than twice the limit of 4.
    assert provider.capacity(50, in_flight=4) == 8 - 4


def test_a_request_waiting_for_its_turn_when_a_pause_begins_does_not_go():
    clock = Clock()
    limit = InFlightLimit(initial=1, minimum=1, maximum=1)
    provider = gate(clock, breaker_threshold=1, pacer=Pacer(limit=limit))

    async def scenario():
        assert await provider.acquire()
        waiting = asyncio.create_task(provider.acquire())
        await asyncio.sleep(0)
        provider.record(ProviderAnswer.ERROR, 0.1)  # the breaker opens; the slot comes free
        went = await asyncio.wait_for(waiting, 1)
        return went, provider.pacer.in_flight

    assert asyncio.run(scenario()) == (False, 0)
