"""A provider for the sending engine's tests: a scripted transport on the fake clock."""

import asyncio
from collections.abc import Callable

import pytest

from messages_app.sending.clock import Clock
from messages_app.sending.gate import ProviderGate
from messages_app.sending.routing import Providers, ProviderSpec, Route, Weights
from messages_app.sending.store import DeliverySpeed, SenderView, WeightChange
from messages_app.sending.transports.base import OutgoingMessage, Transport

# What a script answers for (message id, attempt at the provider): (exception or None, latency).
Script = Callable[[int, int], tuple[Exception | None, float]]


def accept_at_once(msg_id: int, attempt: int) -> tuple[Exception | None, float]:
    return None, 0.01


class ScriptedTransport:
    """The provider as the sender's transport meets it, on the fake clock."""

    def __init__(self, clock: Clock, script: Script = accept_at_once, *, name: str = "scripted"):
        self.clock = clock
        self.name = name  # the prefix of the ids it gives the messages it accepts
        self.script = script
        self.requests: list[tuple[int, float]] = []  # (message id, wall time it began)
        self.accepted: list[tuple[int, float]] = []  # (message id, wall time of the acceptance)
        self.ended: list[tuple[int, float]] = []  # (message id, seconds it ran), answered or cut
        self.phones: dict[int, str] = {}  # message id: the phone it was last sent to
        self.on_request: Callable[[int], None] = lambda count: None  # in the loop, after each begins

    async def __aenter__(self) -> "ScriptedTransport":
        return self

    async def __aexit__(self, *exc_info) -> None:
        pass

    def attempts_of(self, msg_id: int) -> int:
        return sum(1 for seen, _ in self.requests if seen == msg_id)

    async def send(self, message: OutgoingMessage) -> str:
        began = self.clock.monotonic()
        self.requests.append((message.id, self.clock.wall()))
        self.phones[message.id] = message.phone
        error, latency = self.script(message.id, self.attempts_of(message.id))
        self.on_request(len(self.requests))
        try:
            await asyncio.sleep(latency)
        finally:
            self.ended.append((message.id, self.clock.monotonic() - began))
        if error is not None:
            raise error
        self.accepted.append((message.id, self.clock.wall()))
        return f"{self.name}-{message.id}"


def spec(name: str = "default", **options) -> ProviderSpec:
    """A provider as configured, for routes built in a test."""
    return ProviderSpec(name, "probe", f"http://{name}.invalid/v1", "token", **options)


def providers_of(
    clock: Clock,
    routes: list[tuple[ProviderSpec, Transport, ProviderGate]],
    *,
    errors: int = 1_000_000,
    window: float = 60.0,
    drift_every: float = 300.0,
) -> Providers:
    """Providers over the given (spec, transport, gate), weights moving as the options say (by
    default errors never move them)."""
    weights = Weights(
        {spec.name: spec.weight for spec, _, _ in routes},
        clock=clock.monotonic,
        wall=clock.wall,
        errors=errors,
        window=window,
        drift_every=drift_every,
    )
    return Providers([Route(spec, transport, gate) for spec, transport, gate in routes], weights)


class IdleStore:
    """A store with no mailing to send: what a sender does besides sending (its weights) shows
    alone. `speeds` is what it answers of the providers' delivery speeds."""

    holder = "idle"

    def __init__(self, speeds: dict[str, DeliverySpeed] | None = None):
        self.speeds = speeds or {}
        self.speeds_asked_at: list[float] = []  # the loop time of each ask
        self.weight_changes: list[WeightChange] = []

    async def look(self, *, in_flight_mailings, tokens) -> SenderView:
        return SenderView(sendable=[], held=set(), ends={}, pauses={})

    async def claim(self, *, asks, wanted, providers):
        return [], {}

    async def record(self, *, results) -> int:
        return len(results)

    async def release_expired_leases(self) -> int:
        return 0

    async def expire_pending(self, *, mailing_id) -> int:
        return 0

    async def pause(self, *, provider, until) -> None:
        pass

    async def record_weight_changes(self, *, changes) -> None:
        self.weight_changes.extend(changes)

    async def delivery_speeds(self, *, providers, slow_after, window) -> dict[str, DeliverySpeed]:
        self.speeds_asked_at.append(asyncio.get_running_loop().time())
        return {name: speed for name, speed in self.speeds.items() if name in providers}

    async def release_slots(self) -> int:
        return 0

    def close(self) -> None:
        pass


def soon(seconds: float, action: Callable[[], object]) -> None:
    """`action` (which may use the database) `seconds` from now on the running loop's clock."""

    async def act():
        await asyncio.sleep(seconds)
        # On the loop's own thread, which stands still meanwhile: in a thread of its own the fake
        # clock would run on while it waits for the database.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
            action()

    asyncio.get_running_loop().create_task(act())
