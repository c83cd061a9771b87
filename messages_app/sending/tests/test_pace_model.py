"""The pace against a model of a provider, on a fake clock: each sender claims what its pacer's
backlog says (as `ProviderGate.capacity` does), sends when the pacer lets it, and the provider's
latency follows what is in flight: a queue served at a fixed capacity, then the provider's own
latency, uniform between half and one and a half of its mean."""

import asyncio
import heapq
import random
from dataclasses import dataclass, field

import pytest

from messages_app.sending.adaptive import InFlightLimit
from messages_app.sending.outcomes import ProviderAnswer
from messages_app.sending.pacing import Pacer
from messages_app.sending.tests.clock import FakeClock

CLAIM_EVERY = 0.1  # the sender claims about this often
# The defaults: SENDER_CONCURRENCY, SENDER_CONCURRENCY_MIN, SENDER_CONCURRENCY_MAX.
INITIAL, MINIMUM, MAXIMUM = 200, 20, 1000


@dataclass
class Provider:
    latency: float  # the mean of its own latency
    capacity: float  # requests served per second: more wait in its queue
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    free_at: float = 0.0

    def answer_at(self, now: float) -> float:
        self.free_at = max(now, self.free_at) + 1 / self.capacity
        return self.free_at + self.latency * self.rng.uniform(0.5, 1.5)

    @property
    def knee(self) -> float:
        """In flight at which its queue begins: more adds latency and no throughput."""
        return self.capacity * self.latency


@dataclass
class Run:
    answers: list[float]  # when each answer came
    in_flight: list[tuple[float, int]]  # sampled every CLAIM_EVERY, all senders together
    pacers: list[Pacer]

    @property
    def pacer(self) -> Pacer:
        (pacer,) = self.pacers
        return pacer

    def rate(self, start: float, end: float) -> float:
        return sum(start <= at < end for at in self.answers) / (end - start)

    def in_flight_between(self, start: float, end: float) -> list[int]:
        return [count for at, count in self.in_flight if start <= at < end]


def simulate(provider: Provider, *, seconds: float, senders: int = 1) -> Run:
    """`senders` share the provider, each with its own pacer, claiming at moments of their own."""
    clock = FakeClock(start=0.0)
    pacers = [
        Pacer(
            limit=InFlightLimit(initial=INITIAL, minimum=MINIMUM, maximum=MAXIMUM, clock=clock),
            clock=clock,
            sleep=clock.sleep,
        )
        for _ in range(senders)
    ]
    run = Run(answers=[], in_flight=[], pacers=pacers)
    pending: list[tuple[float, int, float, int]] = []  # (answer at, request, sent at, sender)
    claimed = [0] * senders  # each sender's tasks: waiting for a slot, or in flight
    next_claim = [CLAIM_EVERY * index / senders for index in range(senders)]
    next_sample = 0.0

    async def send_all() -> None:
        nonlocal next_sample
        requests = 0
        while clock() < seconds:
            if clock() >= next_sample:
                run.in_flight.append((clock(), sum(pacer.in_flight for pacer in pacers)))
                next_sample += CLAIM_EVERY
            for index, pacer in enumerate(pacers):
                if clock() >= next_claim[index]:
                    claimed[index] = max(claimed[index], min(MAXIMUM, pacer.backlog))
                    next_claim[index] += CLAIM_EVERY
                while claimed[index] > pacer.in_flight < pacer.limit.limit:
                    await pacer.acquire()
                    requests += 1
                    heapq.heappush(pending, (provider.answer_at(clock()), requests, clock(), index))
            moments = [*next_claim, next_sample] + ([pending[0][0]] if pending else [])
            clock.move_to(min(moments))
            while pending and pending[0][0] <= clock():
                answered, _, sent, index = heapq.heappop(pending)
                pacers[index].report(ProviderAnswer.ACCEPTED, latency=answered - sent)
                claimed[index] -= 1
                run.answers.append(answered)

    asyncio.run(send_all())
    return run


def test_at_5_s_with_jitter_the_pace_reaches_its_initial_rate_within_three_round_trips():
    provider = Provider(latency=5.0, capacity=10_000)

    run = simulate(provider, seconds=60)

    ideal = INITIAL / provider.latency  # SENDER_CONCURRENCY in flight, no queue
    assert run.rate(10, 15) >= 0.85 * ideal  # the third round trip
    # Far from its knee, more in flight is more throughput: the limit goes on growing.
    assert run.rate(50, 60) >= 1.5 * ideal
    # The baseline is a round trip's mean latency, not the fastest answer (half of it).
    assert 0.8 * provider.latency <= run.pacer.limit.baseline <= provider.latency


def test_at_5_s_with_jitter_the_pace_stops_at_the_providers_knee():
    provider = Provider(latency=5.0, capacity=60)

    run = simulate(provider, seconds=400)

    assert run.rate(200, 400) >= 0.95 * provider.capacity
    held = run.in_flight_between(200, 400)
    assert sum(held) / len(held) <= 1.6 * provider.knee
    assert max(held) <= 2 * provider.knee


@pytest.mark.parametrize(("latency", "capacity"), [(0.05, 2500), (0.5, 1000)])
def test_against_a_saturated_provider_the_pace_holds_what_its_rate_needs_not_the_ceiling(latency, capacity):
    provider = Provider(latency=latency, capacity=capacity)  # its knee: 125, then 500 in flight

    run = simulate(provider, seconds=400 * latency)

    settled = (100 * latency, 400 * latency)
    assert run.rate(*settled) >= 0.95 * provider.capacity
    held = run.in_flight_between(*settled)
    # Near the knee, far from the ceiling (1,000). Its best round trip, the first (100 sent at once),
    # met a queue already, so above the provider's own latency: hence a little more than the knee;
    # every few round trips a stretch grows it by a quarter for a round trip.
    assert sum(held) / len(held) <= 2 * provider.knee
    assert max(held) <= 3 * provider.knee


class SlowerAfterAWhile(Provider):
    """Latency 0.2 s longer from 1.5 s on, whatever is in flight: a provider (or machine) slower for good."""

    def answer_at(self, now: float) -> float:
        return super().answer_at(now) + (0.2 if now > 1.5 else 0.0)


def test_latency_that_grows_whatever_is_in_flight_becomes_the_new_baseline():
    provider = SlowerAfterAWhile(latency=0.5, capacity=100_000)

    run = simulate(provider, seconds=20)

    assert run.pacer.limit.baseline == pytest.approx(0.7, rel=0.1)
    assert run.rate(15, 20) >= 0.85 * MAXIMUM / 0.7  # back at its ceiling


@pytest.mark.parametrize("senders", [2, 4])
def test_senders_sharing_a_saturated_provider_hold_what_its_rate_needs_together(senders):
    provider = Provider(latency=0.05, capacity=2500)  # its knee: 125 in flight

    run = simulate(provider, seconds=60, senders=senders)

    assert run.rate(10, 60) >= 0.95 * provider.capacity
    held = run.in_flight_between(10, 60)
    # Each sender alone would take the queue the others add for the provider's latency and rebase on
    # it: without the probes they ratchet up together, to a mean of 12 to 16 times the knee here and
    # most of their ceilings. Between two probes the baseline may still rise to REBASE_AT_MOST times
    # the probe's, and the more senders, the faster it does.
    assert sum(held) / len(held) <= 10 * provider.knee
    assert max(held) <= 0.6 * senders * MAXIMUM
