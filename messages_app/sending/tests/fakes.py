"""A provider for the sending engine's tests: a scripted transport on the fake clock."""

import asyncio
from collections.abc import Callable

from messages_app.sending.clock import Clock
from messages_app.sending.transports.base import OutgoingMessage

# What a script answers for (message id, attempt at the provider): (exception or None, latency).
Script = Callable[[int, int], tuple[Exception | None, float]]


def accept_at_once(msg_id: int, attempt: int) -> tuple[Exception | None, float]:
    return None, 0.01


class ScriptedTransport:
    """The provider as the sender's transport meets it, on the fake clock."""

    name = "default"

    def __init__(self, clock: Clock, script: Script = accept_at_once):
        self.clock = clock
        self.script = script
        self.requests: list[tuple[int, float]] = []  # (message id, wall time it began)
        self.accepted: list[tuple[int, float]] = []  # (message id, wall time of the acceptance)
        self.ended: list[tuple[int, float]] = []  # (message id, seconds it ran), answered or cut
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
        error, latency = self.script(message.id, self.attempts_of(message.id))
        self.on_request(len(self.requests))
        try:
            await asyncio.sleep(latency)
        finally:
            self.ended.append((message.id, self.clock.monotonic() - began))
        if error is not None:
            raise error
        self.accepted.append((message.id, self.clock.wall()))
        return f"p-{message.id}"  # the provider's own id, stored with the message


def soon(seconds: float, action: Callable[[], object]) -> None:
    """`action` (which may use the database) `seconds` from now on the running loop's clock."""

    async def act():
        await asyncio.sleep(seconds)
        await asyncio.to_thread(action)  # the ORM is not for the event loop's thread

    asyncio.get_running_loop().create_task(act())
