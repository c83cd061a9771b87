"""The provider gate: every request asks it before it starts and reports to it after it ends.

It knows nothing of Django, the database or HTTP, and reads time only from the clock it is given
(wall-clock seconds, so that a pause can be shared between processes), so tests drive it with a
fake clock. What it holds today:

- the circuit breaker: `breaker_threshold` retryable failures in a row pause sending for
  `breaker_pause` seconds; a refused token pauses for `auth_pause`;
- the shared pause: a pause this gate starts is offered to the other workers through
  `take_pause_to_publish()`, and theirs arrive through `observe_shared_pause()`;
- the trial request: after any pause one request goes alone, full speed only once it succeeds;
- the pace (`pacing.Pacer`, optional): the adaptive in-flight limit, the shared PROVIDER_RATE_LIMIT
  and the rate learned from 429s. `capacity()` claims no more than the pace can use, `acquire()`
  waits for its turn, `record()` tells it every answer with its latency. Every `acquire()` that
  returned True is followed by exactly one `record()` (NO_ANSWER when the request never went).

A 429 (THROTTLED) slows the pace down and never counts as a failure for the breaker.
"""

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .outcomes import ProviderAnswer
from .pacing import Pacer


@dataclass(frozen=True, slots=True)
class Pause:
    until: float  # wall-clock seconds
    reason: str
    critical: bool  # nothing can be sent until a person acts (refused token)


class ProviderGate:
    def __init__(
        self,
        *,
        breaker_threshold: int,
        breaker_pause: float,
        auth_pause: float,
        clock: Callable[[], float] = time.time,  # wall-clock seconds: pauses are shared between processes
        latency_window: int = 200,
        pacer: Pacer | None = None,
    ):
        self._clock = clock
        self.pacer = pacer
        self._breaker_threshold = breaker_threshold
        self._breaker_pause = breaker_pause
        self._auth_pause = auth_pause
        self.paused_until = 0.0
        self.on_trial = False  # after a pause: one request alone until one succeeds
        self._failures_in_a_row = 0
        self._to_publish: Pause | None = None
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._latencies_sorted: list[float] = []
        self._latencies_new = 0  # appended since they were last sorted
        self._latencies_new_max = 0.0  # the slowest of those

    # --- before a request ----------------------------------------------------------------------

    def paused(self) -> bool:
        return self._clock() < self.paused_until

    def capacity(self, wanted: int, in_flight: int) -> int:
        """How many requests may be claimed for now: none while paused, one trial request after a pause."""
        if self.paused():
            return 0
        if self.on_trial:
            return 1 if in_flight == 0 else 0
        if self.pacer is not None:
            return max(0, min(wanted, self.pacer.backlog - in_flight))
        return wanted

    async def acquire(self) -> bool:
        """Called right before a request starts; waits for the pace. False: paused, do not send."""
        if self.paused():
            return False
        if self.pacer is None:
            return True
        await self.pacer.acquire()
        if self.paused():  # a pause began while this request waited for its turn
            self.pacer.report(ProviderAnswer.NO_ANSWER)
            return False
        return True

    async def aclose(self) -> None:
        if self.pacer is not None:
            await self.pacer.aclose()

    # --- after a request -----------------------------------------------------------------------

    def record(self, answer: ProviderAnswer, latency: float, *, retry_after: float | None = None) -> None:
        if self.pacer is not None:
            self.pacer.report(answer, latency=latency, retry_after=retry_after)
        if answer in (ProviderAnswer.NO_ANSWER, ProviderAnswer.THROTTLED):
            return
        if answer is ProviderAnswer.AUTH_REFUSED:
            self._pause(self._auth_pause, "the provider refused our token", critical=True)
            return
        self._latencies.append(latency)
        self._latencies_new += 1
        self._latencies_new_max = max(self._latencies_new_max, latency)
        if answer is ProviderAnswer.ERROR:
            self._failures_in_a_row += 1
            if self.on_trial or self._failures_in_a_row >= self._breaker_threshold:
                self._pause(self._breaker_pause, f"{self._failures_in_a_row} failures in a row")
            return
        self._failures_in_a_row = 0
        self.on_trial = False

    def latency_percentile(self, share: float) -> float:
        """A high percentile of recent request latencies (0 before any answer).

        Asked before every request, so the window is sorted again only when it may have risen (an
        answer slower than the value) or once a tenth of it is new. Never below the true value: it
        decides whether a request can still finish before the mailing's end.
        """
        if self._latencies_new and (
            self._latencies_new * 10 >= len(self._latencies_sorted)
            or self._latencies_new_max > self._percentile_of_sorted(share)
        ):
            self._latencies_sorted, self._latencies_new, self._latencies_new_max = (
                sorted(self._latencies),
                0,
                0.0,
            )
        return self._percentile_of_sorted(share)

    def _percentile_of_sorted(self, share: float) -> float:
        ordered = self._latencies_sorted
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    # --- the pause shared with other workers ---------------------------------------------------

    def observe_shared_pause(self, until: float | None) -> None:
        if until is not None and until > self.paused_until:
            self.paused_until = until
            self.on_trial = True

    def take_pause_to_publish(self) -> Pause | None:
        """The pause this gate started since the last call, for the other workers to share."""
        pause, self._to_publish = self._to_publish, None
        return pause

    def _pause(self, seconds: float, reason: str, *, critical: bool = False) -> None:
        now = self._clock()
        self._failures_in_a_row = 0
        self.on_trial = True
        if now < self.paused_until:
            return  # already paused: one answer in flight during a pause does not extend it
        self.paused_until = now + seconds
        self._to_publish = Pause(self.paused_until, reason, critical)
