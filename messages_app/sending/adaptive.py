"""How hard to push the provider, learned from its answers (no Django here).

`InFlightLimit`: requests in flight. By Little's law a sender's throughput is what it has in flight
divided by the latency, so while the latency of a round trip stays near the lowest seen, more in
flight is more throughput and the limit grows (a slow start, then a quarter per round trip); once
the latency climbs with it, the provider is queueing our requests (its knee): the limit holds, and
backs off when the latency has grown by half (as TCP Vegas and Netflix's gradient limit compare with
the lowest recent latency). A 429, a timeout or a 5xx backs it off as well.

Senders sharing a provider each see the queue the others add, which one sender cannot tell from the
provider's own latency: each would take it for the provider's and rebase, and their limits would
ratchet up together. So at the same moments of the wall clock every sender drops its limit to the
minimum until requests sent after have been answered: together they drain the provider's queue, and
the mean latency of those answers is the provider's own (BBR's ProbeRTT). The baseline is held between it and
REBASE_AT_MOST times it until the next probe.

`LearnedRate`: when nobody configured the provider's rate and it answers 429, the rate it
accepted just before is the estimate; cut by a tenth on a 429 (once a second at most), grown
by a tenth every second without one. It stays None (no rate limit) until the first 429.
"""

import time
from collections import deque

from .clock import TimeSource

BACKOFF = 0.9  # multiplicative decrease
# The slow start begins at this share of its target (SENDER_CONCURRENCY), so that it reaches it in
# one round trip: from the floor it would take several, tens of seconds with a provider answering in
# seconds.
SLOW_START_SHARE = 0.5
# Additive increase of the in-flight limit per answer after the slow start, while it is in use and
# latency near its best: about a quarter per round trip, so that a slow provider's mailing reaches
# its ceiling in a few round trips instead of spending most of its time climbing (`make bench`,
# latency phase).
GROWTH_PER_ANSWER = 0.25
# A round trip's mean latency over the baseline: below GROW_BELOW, more in flight still brings more
# throughput; above CUT_ABOVE a third of every request's time is spent waiting in the provider's queue.
# The baseline is the lowest round trip's *mean*, not the fastest answer: with latencies spread
# ±50 % the fastest answer is half the mean. Means of a growing limit run a few per cent low (its
# newest requests are over-represented, and their quick answers arrive first), hence the margin.
GROW_BELOW = 1.25
CUT_ABOVE = 1.5
# Answers in a round trip's mean at the least: fewer vary too much to be compared.
MIN_ROUND_TRIP_ANSWERS = 16
# Cut this many round trips in a row: when the latency did not fall with what was in flight, it is
# the provider's own (slower for good), and becomes the new baseline.
REBASE_AFTER_CUTS = 5
REBASE_IF_LATENCY_KEPT = 0.9  # share of the highest latency since the cuts that counts as not fallen
# Held this many round trips between GROW_BELOW and CUT_ABOVE, the limit grows for one round trip to
# see whether the latency follows (our own queue: back to where it was) or not (the latency is not
# ours, e.g. a machine busy with something else, and becomes the new baseline).
STRETCH_AFTER_HELD = 4
# A probe sends at the minimum for about two round trips (the drain, then the answers it waits
# for): one every PROBE_EVERY seconds, or every PROBE_ROUND_TRIPS round trips (the last probe's, or a
# faster one since) when those are longer, the period doubled until it is. Senders that measure
# nearly the same latency then pick the same period, and the moments of a longer period are moments
# of the shorter too.
PROBE_EVERY = 5.0
PROBE_ROUND_TRIPS = 100
# The baseline is held at most this many times the last probe's latency: a rebase (a stretch, or cuts
# that did not bring the latency down) past it waits for the next probe to say whether it is the
# provider's. Not tighter: where the provider shares our CPU, its latency grows long before its
# throughput stops growing (`make bench`, latency phase at 50 ms).
REBASE_AT_MOST = 1.75
# A moment more than this and a round trip past was slept through (no answers, nothing sent): the
# others are done probing, and one alone would measure their queue.
PROBE_LATE = 1.0


class InFlightLimit:
    """Starts at half of `initial` (not below `minimum`) and doubles every round trip (slow
    start) up to `initial`, or until latency climbs; from there it grows by a quarter per round trip
    up to `maximum` while latency stays near its baseline. At the probes' moments it drops to
    `minimum` for about two round trips."""

    def __init__(
        self,
        *,
        initial: int,
        minimum: int,
        maximum: int,
        clock: TimeSource = time.monotonic,
        wall: TimeSource | None = None,
    ):
        """`wall`: a clock every sender agrees on, for the moments of the probes (`clock` if not given)."""
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum, self.maximum = minimum, maximum
        self.slow_start_until = float(min(maximum, max(minimum, initial)))
        self.value = float(max(minimum, int(self.slow_start_until * SLOW_START_SHARE)))
        self._clock, self._wall = clock, wall or clock
        self.baseline: float | None = None  # the lowest mean latency of a round trip
        self.latency: float | None = None  # the mean latency of the last round trip (so far, the first)
        self._round_trip: _RoundTrip | None = None  # begins with its first answer
        self._growing = True  # the last round trip's latency was near the baseline, or a stretch grows it
        self._held_in_a_row = 0
        self._stretch: tuple[float, float] | None = None  # latency and limit before a stretch grew it
        self._stretch_round_trips = 0
        self._cuts_in_a_row = 0
        self._worst_since_cuts = 0.0  # the highest round trip latency since the first of those cuts
        self._cut_until = 0.0  # one decrease per round trip: answers already in flight say the same
        self._probe: _Probe | None = None
        self._probed: float | None = None  # the last probe's latency
        self._lowest: float | None = None  # the lowest since: it sets the probes' period
        self._probe_soon = False  # a rebase met the bound: probe at the next moment of the shortest period
        self._probed_at, _ = self._probe_moment()  # the last probe's moment (a multiple of its period)

    @property
    def limit(self) -> int:
        return int(self.value)

    def on_answer(self, latency: float, *, in_flight: int) -> None:
        """An answer came back in time (accepted or refused): latency says whether it queued."""
        if self._probe is not None:
            self._probing(latency, in_flight)
            return
        if self.baseline is not None:
            moment, period = self._probe_moment()
            if moment > self._probed_at:
                self._probed_at = moment
                late = self._wall() - moment
                if late <= PROBE_LATE + (self.latency or 0.0):
                    # Senders a little apart in latency may pick periods a step apart: only at a
                    # moment of twice the period are all of them surely probing together.
                    self._start_probe(shared=moment % (2 * period) == 0)
                    return
        if self._round_trip is None:
            # About one round trip of answers when the limit is in use.
            self._round_trip = _RoundTrip(max(MIN_ROUND_TRIP_ANSWERS, self.limit))
        round_trip = self._round_trip
        round_trip.add(latency)
        if self.baseline is None:
            self.latency = round_trip.mean
        elif (
            self._stretch is None
            and round_trip.answers >= MIN_ROUND_TRIP_ANSWERS
            and round_trip.mean > self.baseline * GROW_BELOW
        ):
            # Stop growing at once: a round trip of growth past the knee is a round trip of queue.
            self._growing = False
        # Only a limit in use may grow: one left half empty says nothing of the provider.
        if self._growing and in_flight * 2 >= self.value:
            growth = 1.0 if self.value < self.slow_start_until else GROWTH_PER_ANSWER
            self.value = min(self.maximum, self.value + growth)
        if round_trip.answers >= round_trip.size:
            self._round_trip = None
            self._judge(round_trip)

    def on_overload(self) -> None:
        """A 429, a timeout, a 5xx or a refused connection."""
        now = self._clock()
        if now >= self._cut_until:
            self._cut_until = now + (self.latency or 0.0)
            self._decrease()

    def _probe_moment(self) -> tuple[float, float]:
        """The latest moment of the probes' period, on the clock every sender reads, and the period."""
        period, round_trip = PROBE_EVERY, None if self._probe_soon else self._lowest
        while round_trip is not None and period < PROBE_ROUND_TRIPS * round_trip:
            period *= 2
        return self._wall() // period * period, period

    def _probing(self, latency: float, in_flight: int) -> None:
        """During a probe: once no more than the minimum is in flight, the answers to requests sent
        after tell the latency with no queue of ours."""
        probe, now = self._probe, self._clock()
        assert probe is not None
        if probe.drained_at is None:
            if in_flight <= self.minimum:
                probe.drained_at = now
            return
        if now - latency < probe.drained_at:
            return  # sent before the queue was drained
        probe.answers.add(latency)
        if probe.answers.answers < probe.answers.size:
            return
        self._probe, measured = None, probe.answers.mean
        if probe.shared:
            self._probed = measured
            self.baseline = max(self.baseline or measured, measured)  # the provider may be slower now
        elif self._probed is None or measured < self._probed:
            self._probed = measured  # maybe alone, beside the others' queue: faster, never slower
        probed = self._lowest = self._probed
        self.baseline = min(self.baseline or probed, probed * REBASE_AT_MOST)
        self.value = probe.value_before
        self._round_trip, self._stretch = None, None
        self._held_in_a_row = self._cuts_in_a_row = 0

    def _judge(self, round_trip: "_RoundTrip") -> None:
        """Once per round trip: may grow, hold or back off, by its mean latency against the baseline."""
        latency = self.latency = round_trip.mean
        self.baseline = min(self.baseline or latency, latency)
        self._lowest = min(self._lowest or latency, latency)
        if self._stretch is not None:
            self._judge_stretch(self._stretch, latency)
            return
        queueing = latency / self.baseline if self.baseline else 1.0
        self._growing = queueing <= GROW_BELOW
        if queueing > CUT_ABOVE:
            self._held_in_a_row = 0
            self._back_off_from_queueing(latency)
            return
        self._cuts_in_a_row = 0
        if self._growing:
            self._held_in_a_row = 0
        else:
            self.slow_start_until = 0.0  # the knee: what more in flight would add only waits
            self._held_in_a_row += 1
            if self._held_in_a_row >= STRETCH_AFTER_HELD:
                self._stretch, self._stretch_round_trips = (self.latency, self.value), 0
                self._growing = True

    def _judge_stretch(self, stretch: tuple[float, float], latency: float) -> None:
        """The round trip that grew is over; the next one's answers say what the growth did."""
        self._stretch_round_trips += 1
        self._growing = False
        if self._stretch_round_trips < 2:
            return
        (latency_before, value_before), self._stretch = stretch, None
        self._held_in_a_row = 0
        grown = self.value / value_before - 1
        # A quarter of the growth: the requests answered by now went out while the limit still grew.
        if latency > latency_before * (1 + grown / 4):
            self.value = value_before  # the latency followed what was in flight: our own queue
        else:
            self._rebase(latency)
            self._growing = True

    def _back_off_from_queueing(self, latency: float) -> None:
        self._worst_since_cuts = max(self._worst_since_cuts, latency) if self._cuts_in_a_row else latency
        self._cuts_in_a_row += 1
        self._decrease()
        if (
            self._cuts_in_a_row >= REBASE_AFTER_CUTS
            and latency >= self._worst_since_cuts * REBASE_IF_LATENCY_KEPT
        ):
            self._rebase(latency)
            self._cuts_in_a_row = 0

    def _rebase(self, latency: float) -> None:
        if self._probed is not None and latency > self._probed * REBASE_AT_MOST:
            # Far from the last probe: the next moment of the shortest period says whether the
            # provider is slower for good (the other senders, as far from theirs, probe then too).
            latency, self._probe_soon = self._probed * REBASE_AT_MOST, True
            self._probed_at = max(self._probed_at, self._wall() // PROBE_EVERY * PROBE_EVERY)
        self.baseline = latency

    def _start_probe(self, *, shared: bool) -> None:
        self._probe, self._probe_soon = _Probe(self.value, shared=shared), False
        self.value = float(self.minimum)

    def _decrease(self) -> None:
        if self._probe is not None:
            self._probe.value_before = max(self.minimum, self._probe.value_before * BACKOFF)
        self.value = max(self.minimum, self.value * BACKOFF)
        self.slow_start_until = 0.0


class _Probe:
    __slots__ = ("value_before", "shared", "drained_at", "answers")

    def __init__(self, value_before: float, *, shared: bool):
        self.value_before = value_before  # the limit to come back to
        self.shared = shared  # at a moment every sender of the provider surely probes too
        self.drained_at: float | None = None  # when no more than the minimum was in flight
        self.answers = _RoundTrip(MIN_ROUND_TRIP_ANSWERS)


class _RoundTrip:
    """The answers of about one round trip, for their mean latency."""

    __slots__ = ("size", "answers", "total")

    def __init__(self, size: int):
        self.size = size
        self.answers = 0
        self.total = 0.0

    def add(self, latency: float) -> None:
        self.answers += 1
        self.total += latency

    @property
    def mean(self) -> float:
        return self.total / self.answers


RATE_WINDOW = 1.0  # seconds of accepted sends the estimate is taken over
MIN_WINDOW = 0.05  # the shortest span an early estimate divides by
CUT_EVERY = 0.25  # seconds: at most one cut of the learned rate per this
RATE_GROWTH = 0.1  # share of the rate added every second without a 429
MIN_RATE = 1.0


class LearnedRate:
    def __init__(self, *, clock: TimeSource = time.monotonic):
        self.rate: float | None = None
        self._clock = clock
        self._first_accepted: float | None = None
        self._accepted: deque[float] = deque()
        self._provisional = False  # learned before a full window of acceptances was seen
        self._throttled: deque[float] = deque()
        # Share of 429s among answers in the window that is ignored (0: every 429 counts).
        self.tolerance = 0.0
        self._grown_at = 0.0
        self._cut_until = 0.0

    def on_accepted(self) -> None:
        now = self._clock()
        if self._first_accepted is None:
            self._first_accepted = now
        self._accepted.append(now)
        self._forget_before(now - RATE_WINDOW)
        if self.rate is not None:
            self.rate += self.rate * RATE_GROWTH * min(1.0, now - self._grown_at)
            self._grown_at = now

    def on_throttled(self) -> None:
        now = self._clock()
        if self._first_accepted is None:
            return  # nothing accepted yet, nothing to learn from: the in-flight limit backs off
        self._throttled.append(now)
        self._forget_before(now - RATE_WINDOW)
        if len(self._throttled) <= self.tolerance * (len(self._accepted) + len(self._throttled)):
            return
        seen_for = now - self._first_accepted
        provisional = seen_for < RATE_WINDOW
        # A provisional estimate is replaced as soon as a full window allows a better one.
        if now < self._cut_until and not (self._provisional and not provisional):
            return
        self._forget_before(now - RATE_WINDOW)
        accepted_rate = len(self._accepted) / max(MIN_WINDOW, min(RATE_WINDOW, seen_for))
        if self.rate is None or self._provisional:
            self.rate = max(MIN_RATE, accepted_rate * BACKOFF)
        else:
            # What was accepted says where the provider stands, unless we were not sending at our
            # rate (a sender starting or draining): then no deeper than half in one cut.
            self.rate = max(MIN_RATE, max(min(self.rate, accepted_rate), self.rate / 2) * BACKOFF)
        self._provisional = provisional
        self._grown_at = now
        # Sends already on their way were paced by the old rate: their 429s are not news. Cuts
        # follow what was accepted, so a few in a row do not compound much.
        self._cut_until = now + CUT_EVERY

    def recent_rate(self) -> float:
        """Answers per second over the last window."""
        self._forget_before(self._clock() - RATE_WINDOW)
        return len(self._accepted) / RATE_WINDOW

    def _forget_before(self, moment: float) -> None:
        for seen in (self._accepted, self._throttled):
            while seen and seen[0] < moment:
                seen.popleft()
