"""How hard to push the provider, learned from its answers (no Django here).

`InFlightLimit`: requests in flight, a slow start, then additive increase while latency stays near
its baseline (a long average), multiplicative decrease when it climbs or the provider throttles or
fails (AIMD, as TCP's congestion window and Netflix's concurrency-limits).

`LearnedRate`: when nobody configured the provider's rate and it answers 429, the rate it
accepted just before is the estimate; cut by a tenth on a 429 (once a second at most), grown
by a tenth every second without one. It stays None (no rate limit) until the first 429.
"""

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]

BACKOFF = 0.9  # multiplicative decrease
# Additive increase of the in-flight limit per answer while it is in use: about a quarter per round
# trip, so that a slow provider's mailing reaches its ceiling in a few round trips instead of spending
# most of its time climbing (`make bench`, latency phase).
GROWTH_PER_ANSWER = 0.25
LATENCY_TOLERANCE = 2.0  # smoothed latency above baseline times this: the provider is queueing
LATENCY_SMOOTHING = 0.05  # weight of a new sample in the short moving average
# The baseline is a long moving average (this many seconds): our own queueing shows within a few
# round trips, while a provider (or a machine) slower for good becomes the new normal instead of
# holding the limit at its floor forever.
BASELINE_SECONDS = 10.0


class InFlightLimit:
    """Starts at `minimum` and doubles every round trip (slow start) up to `initial`, or until the
    first sign of overload; from there it grows by about a quarter per round trip up to `maximum`."""

    def __init__(self, *, initial: int, minimum: int, maximum: int, clock: Clock = time.monotonic):
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum, self.maximum = minimum, maximum
        self.slow_start_until = float(min(maximum, max(minimum, initial)))
        self.value = float(minimum)
        self._clock = clock
        self.baseline: float | None = None
        self.smoothed: float | None = None
        self._sampled_at = clock()
        self._cut_until = 0.0  # one decrease per round trip: answers already in flight say the same

    @property
    def limit(self) -> int:
        return int(self.value)

    def on_answer(self, latency: float, *, in_flight: int) -> None:
        """An answer came back in time (accepted or refused): latency says whether it queued."""
        self._sample(latency)
        if self.smoothed > self.baseline * LATENCY_TOLERANCE:
            self._decrease()
        elif in_flight * 2 >= self.value:  # only a limit in use may grow
            growth = 1.0 if self.value < self.slow_start_until else GROWTH_PER_ANSWER
            self.value = min(self.maximum, self.value + growth)

    def on_overload(self) -> None:
        """A 429, a timeout, a 5xx or a refused connection."""
        self._decrease()

    def _decrease(self) -> None:
        now = self._clock()
        if now < self._cut_until:
            return
        self.value = max(self.minimum, self.value * BACKOFF)
        self.slow_start_until = 0.0
        self._cut_until = now + (self.smoothed or 0.0)

    def _sample(self, latency: float) -> None:
        now = self._clock()
        if self.smoothed is None:
            self.baseline = self.smoothed = latency
        else:
            self.smoothed += LATENCY_SMOOTHING * (latency - self.smoothed)
            self.baseline += min(1.0, (now - self._sampled_at) / BASELINE_SECONDS) * (latency - self.baseline)
        self._sampled_at = now


RATE_WINDOW = 1.0  # seconds of accepted sends the estimate is taken over
MIN_WINDOW = 0.05  # the shortest span an early estimate divides by
CUT_EVERY = 0.25  # seconds: at most one cut of the learned rate per this
RATE_GROWTH = 0.1  # share of the rate added every second without a 429
MIN_RATE = 1.0


class LearnedRate:
    def __init__(self, *, clock: Clock = time.monotonic):
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
