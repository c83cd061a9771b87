"""The provider gate on a fake clock: breaker, probe, shared pause, latency margin."""

import asyncio

from messages_app.gate import ProviderAnswer, ProviderGate


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
