"""The contract every provider transport keeps.

A transport sends one message and returns when the provider accepted it, with the provider's own id
for it ("" when its answer gives none); otherwise it raises TransportError, saying whether a later
attempt could succeed. Nothing else escapes it.
"""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    id: int
    phone: str
    text: str


class TransportError(Exception):
    def __init__(self, detail: str, *, permanent: bool = False):
        super().__init__(detail)
        self.detail = detail
        self.permanent = permanent


class TransportAuthError(TransportError):
    """The provider refused our credentials: no message can go out until they are fixed."""


class TransportThrottled(TransportError):
    """The provider asked us to slow down (HTTP 429): the message is fine, our pace is not.

    `retry_after` is the provider's wait in seconds, None when it gave none.
    """

    def __init__(self, detail: str, *, retry_after: float | None = None):
        super().__init__(detail)
        self.retry_after = retry_after


def no_answer_within(seconds: float) -> str:
    """The error of a request given up after `seconds` without an answer."""
    return f"no answer within {seconds:g} s"


class Transport(Protocol):
    # The provider's name: stored with every message it took (Message.provider), receipts name it.
    name: str

    async def __aenter__(self) -> "Transport": ...

    async def __aexit__(self, *exc_info) -> None: ...

    async def send(self, message: OutgoingMessage) -> str:
        """Deliver one message; returns the provider's own id for it ("" when its API gives none).
        The caller bounds how long it may take (it cancels the send): a transport bounds only the
        connecting."""
