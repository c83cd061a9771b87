"""How hard to push the provider, learned from its answers (no Django here).

`InFlightLimit`: requests in flight, additive increase while latency stays near its baseline,
multiplicative decrease when it climbs or the provider throttles or fails (AIMD, as TCP's
congestion window and Netflix's concurrency-limits).

`LearnedRate`: when nobody configured the provider's rate and it answers 429, the rate it
accepted just before is the estimate; cut by a tenth on every 429, grown by a little every
second without one. It stays None (no rate limit) until the first 429.
"""

import time
from collections import deque
from collections.abc import Callable

Clock = Callable[[], float]

BACKOFF = 0.9  # multiplicative decrease
# Additive increase of the in-flight limit per answer while it is in use: about a tenth per round trip.
GROWTH_PER_ANSWER = 0.1
LATENCY_TOLERANCE = 2.0  # smoothed latency above baseline times this: the provider is queueing
LATENCY_SMOOTHING = 0.05  # weight of a new sample in the moving average
# The baseline is the fastest answer of the last window, so that a provider that got slower for
# good becomes the new normal instead of holding the limit down forever.
BASELINE_WINDOW = 30.0


class InFlightLimit:
    def __init__(self, *, initial: int, minimum: int, maximum: int, clock: Clock = time.monotonic):
        if not 1 <= minimum <= maximum:
            raise ValueError("need 1 <= minimum <= maximum")
        self.minimum, self.maximum = minimum, maximum
        self.value = float(min(maximum, max(minimum, initial)))
        self._clock = clock
        self.baseline: float | None = None
        self.smoothed: float | None = None
        self._window_best: float | None = None
        self._window_ends = clock() + BASELINE_WINDOW
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
            self.value = min(self.maximum, self.value + GROWTH_PER_ANSWER)

    def on_overload(self) -> None:
        """A 429, a timeout, a 5xx or a refused connection."""
        self._decrease()

    def _decrease(self) -> None:
        now = self._clock()
        if now < self._cut_until:
            return
        self.value = max(self.minimum, self.value * BACKOFF)
        self._cut_until = now + (self.smoothed or 0.0)

    def _sample(self, latency: float) -> None:
        now = self._clock()
        if now >= self._window_ends:
            self.baseline = self._window_best or self.baseline
            self._window_best = None
            self._window_ends = now + BASELINE_WINDOW
        self._window_best = latency if self._window_best is None else min(self._window_best, latency)
        self.baseline = latency if self.baseline is None else min(self.baseline, latency)
        if self.smoothed is None:
            self.smoothed = latency
        else:
            self.smoothed += LATENCY_SMOOTHING * (latency - self.smoothed)


RATE_WINDOW = 1.0  # seconds of accepted sends the estimate is taken over
RATE_GROWTH = 0.02  # share of the rate added every second without a 429
MIN_RATE = 1.0


class LearnedRate:
    def __init__(self, *, clock: Clock = time.monotonic):
        self.rate: float | None = None
        self._clock = clock
        self._started = clock()
        self._accepted: deque[float] = deque()
        self._grown_at = 0.0
        self._cut_until = 0.0

    def on_accepted(self) -> None:
        now = self._clock()
        self._accepted.append(now)
        self._forget_before(now - RATE_WINDOW)
        if self.rate is not None:
            self.rate += self.rate * RATE_GROWTH * min(1.0, now - self._grown_at)
            self._grown_at = now

    def on_throttled(self) -> None:
        now = self._clock()
        if now < self._cut_until:
            return
        self._forget_before(now - RATE_WINDOW)
        # At the start the window is not full yet: what was accepted over how long it has been.
        accepted_rate = len(self._accepted) / max(0.05, min(RATE_WINDOW, now - self._started))
        if self.rate is not None:
            self.rate = max(MIN_RATE, min(self.rate, accepted_rate or self.rate) * BACKOFF)
        elif accepted_rate:
            self.rate = max(MIN_RATE, accepted_rate * BACKOFF)
        else:
            return  # nothing accepted yet, nothing to learn from: the in-flight limit backs off
        self._grown_at = now
        # Sends already on their way were paced by the old rate: their 429s are not news.
        self._cut_until = now + RATE_WINDOW / 4

    def _forget_before(self, moment: float) -> None:
        while self._accepted and self._accepted[0] < moment:
            self._accepted.popleft()
