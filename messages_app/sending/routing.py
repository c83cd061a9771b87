"""Which provider takes a message: its routes first, then weight among the healthy ones.

Each provider has its own transport and its own gate (pause, breaker, trial request, pace), so one
provider's outage or refused token pauses that provider alone and routing sends its share to the
others. Weights move too, more slowly: `Weights` takes a step of a provider's weight away after
`errors` failed requests within `window` seconds, or when too many of its recent messages were
delivered late (`SlowDelivery`), and gives a step back after `drift_every` seconds without a
shift while they are no longer late, until it is back at its resting weight. Every change is
kept, with its reason, for the store to record. No Django here.
"""

import contextlib
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .clock import TimeSource
from .gate import ProviderGate
from .outcomes import ProviderAnswer
from .store import DeliverySpeed, WeightChange
from .transports.base import Transport

WEIGHT_STEPS = 10  # a shift moves a tenth of a provider's resting weight


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """A provider as configured: what the engine's parts for it are built from."""

    name: str
    transport: str  # the kind of API (providers.models.TransportKind)
    url: str
    token: str = field(repr=False)  # never in a log line
    weight: int = 100
    rate_limit: float | None = None
    operators_only: frozenset[str] = frozenset()
    operators_excluded: frozenset[str] = frozenset()

    def takes(self, operator_code: str) -> bool:
        if operator_code in self.operators_excluded:
            return False
        return not self.operators_only or operator_code in self.operators_only


@dataclass(eq=False)
class Route:
    """One provider at work in a sender: its transport, its gate and what it has in flight."""

    spec: ProviderSpec
    transport: Transport
    gate: ProviderGate
    in_flight: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def available(self) -> bool:
        """May take a message now: not paused, and after a pause only its one trial request."""
        if self.gate.paused():
            return False
        return not (self.gate.on_trial and self.in_flight)


@dataclass(frozen=True, slots=True)
class SlowDelivery:
    """When a provider's deliveries are slow enough to take a step of its weight away: `share` of
    at least `sample` messages sent within the last `window` seconds (and at least `after` ago)
    were delivered more than `after` seconds after their acceptance, or not yet."""

    after: float = 300.0
    share: float = 0.15
    sample: int = 100
    window: float = 600.0


class Weights:
    def __init__(
        self,
        resting: dict[str, int],
        *,
        clock: TimeSource,
        wall: TimeSource,
        errors: int,
        window: float,
        drift_every: float,
        slow: SlowDelivery = SlowDelivery(),
    ):
        self.resting = dict(resting)
        self.current = dict(resting)
        self.slow = slow
        self._clock, self._wall = clock, wall
        self._errors, self._window, self._drift_every = errors, window, drift_every
        self._recent_errors: dict[str, deque[float]] = {name: deque() for name in resting}
        self._last_change: dict[str, float] = {}
        self._last_slow_shift: dict[str, float] = {}
        self._slow: set[str] = set()  # judged slow at the last look
        self._changes: list[WeightChange] = []

    def on_error(self, name: str) -> None:
        now = self._clock()
        recent = self._recent_errors[name]
        recent.append(now)
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._errors and self.current[name] > 0:
            recent.clear()
            self._shift_away(name, f"{self._errors} errors within {self._window:g} s", now)

    def on_delivery_speed(self, name: str, speed: DeliverySpeed) -> None:
        """A step away when the provider's recent deliveries are slow, at most once per
        `drift_every` (the messages judged next time are mostly the same ones); while they are,
        it does not drift back."""
        now = self._clock()
        # Not one receipt: more likely our receipt path (server, queue, writer) is down than every
        # message of the provider late, and no provider should lose weight for that.
        if speed.judged < self.slow.sample or speed.slow_share < self.slow.share or not speed.delivered:
            self._slow.discard(name)
            return
        self._slow.add(name)
        if not self.current[name] or now - self._last_slow_shift.get(name, -math.inf) < self._drift_every:
            return
        self._last_slow_shift[name] = now
        reason = (
            f"{100 * speed.slow_share:.0f} % of {speed.judged} messages took over {self.slow.after:g} s"
            " to be delivered"
        )
        self._shift_away(name, reason, now)

    def drift(self) -> None:
        """Each provider away from its resting weight steps back once `drift_every` has passed,
        unless its deliveries are still slow."""
        now = self._clock()
        for name, weight in self.current.items():
            resting = self.resting[name]
            if name in self._slow or weight == resting:
                continue
            if now - self._last_change.get(name, now) >= self._drift_every:
                step = min(self._step(name), abs(resting - weight))
                reason = f"no shift for {self._drift_every:g} s: back toward its resting weight {resting}"
                self._set(name, weight + step if weight < resting else weight - step, reason, now)

    def take_changes(self) -> list[WeightChange]:
        changes, self._changes = self._changes, []
        return changes

    def _step(self, name: str) -> int:
        return max(1, self.resting[name] // WEIGHT_STEPS)

    def _shift_away(self, name: str, reason: str, now: float) -> None:
        self._set(name, max(0, self.current[name] - self._step(name)), reason, now)

    def _set(self, name: str, weight: int, reason: str, now: float) -> None:
        self._changes.append(WeightChange(name, self.current[name], weight, reason, self._wall()))
        self.current[name] = weight
        self._last_change[name] = now


class NoRoute(Exception):
    """No provider's routes take this operator code: the message can never be sent."""


class Providers:
    """The providers one sender sends through, and the choice of one for each message."""

    def __init__(
        self,
        routes: Sequence[Route],
        weights: Weights,
        *,
        choices: Callable[..., list[Route]] = random.choices,
    ):
        if not routes:
            raise ValueError("at least one provider is needed")
        self.routes = list(routes)
        self.weights = weights
        self._choices = choices
        self._exits = contextlib.AsyncExitStack()

    async def __aenter__(self) -> "Providers":
        for route in self.routes:
            await self._exits.enter_async_context(route.transport)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._exits.aclose()

    async def aclose(self) -> None:
        for route in self.routes:
            await route.gate.aclose()

    def choose(self, operator_code: str) -> Route | None:
        """The provider for a message to this operator: by weight among those its routes allow that
        may take it now; None while none of them may. Raises NoRoute when no route allows it."""
        allowed = [route for route in self.routes if route.spec.takes(operator_code)]
        if not allowed:
            raise NoRoute(f"no provider takes operator code {operator_code or '(none)'}")
        ready = [route for route in allowed if route.available()]
        if not ready:
            return None
        if len(ready) == 1:
            return ready[0]
        weights = [self.weights.current[route.name] for route in ready]
        # Every candidate shifted down to nothing: they share alike rather than stop.
        return self._choices(ready, weights if any(weights) else None)[0]

    def heard(self, route: Route, answer: ProviderAnswer) -> None:
        if answer is ProviderAnswer.ERROR:
            self.weights.on_error(route.name)

    def capacity(self, wanted: int) -> int:
        """How many messages the providers that may send now can take, `wanted` at most."""
        return min(wanted, sum(route.gate.capacity(wanted, route.in_flight) for route in self.routes))

    def latency_percentile(self, share: float) -> float:
        return max(route.gate.latency_percentile(share) for route in self.routes)

    def resume_at(self, operator_code: str) -> float:
        """When a message to this operator deferred for a pause may go again (wall-clock seconds; 0:
        now): at once while a provider that takes it is not paused, else when the first is back."""
        takers = [route for route in self.routes if route.spec.takes(operator_code)]
        if not takers or any(not route.gate.paused() for route in takers):
            return 0.0
        return min(route.gate.paused_until for route in takers)

    def observe_pauses(self, pauses: dict[str, float]) -> None:
        for route in self.routes:
            route.gate.observe_shared_pause(pauses.get(route.name))

    def names(self) -> list[str]:
        return [route.name for route in self.routes]
