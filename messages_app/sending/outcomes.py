"""What one request's end means, in one table: for the message (its `Outcome`, which
`messages_app.services.messages_record` turns into a stored status) and for the provider's health
(its `ProviderAnswer`, which the gate's breaker and pace learn from).

Every caller classifies through `fate_of` (the sender, test sends), so an answer or an exception
means the same thing wherever it is met. Imports no Django.
"""

import enum
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from .cutoffs import Cut
from .transports.base import TransportAuthError, TransportError, TransportThrottled, no_answer_within


class Outcome(enum.StrEnum):
    """How one claimed message ended this time round."""

    SENT = "sent"  # the provider accepted it
    FAILED = "failed"  # it can never be sent (rejected, invalid, client deleted)
    RETRY = "retry"  # the attempt failed in a way a later attempt may not: back off, then again
    DEFERRED = "deferred"  # not attempted (pause, mailing not sendable, worker stopping): back at once
    THROTTLED = "throttled"  # the provider answered 429: back at once, the attempt given back
    EXPIRED = "expired"  # not attempted: it could not have finished before the mailing's end
    UNKNOWN = "unknown"  # sent, but the answer never came (cut by the end or a stopping worker)


class ProviderAnswer(enum.Enum):
    """What one request told us about the provider's health (not about the message)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"  # a permanent refusal of this message: the provider itself is fine
    ERROR = "error"  # 5xx, garbage, timeout, refused connection
    THROTTLED = "throttled"  # 429: we go too fast; the provider is fine
    AUTH_REFUSED = "auth_refused"
    NO_ANSWER = "no_answer"  # not sent, or cut by the mailing's end or a stopping worker: says nothing


@dataclass(frozen=True, slots=True)
class Fate:
    outcome: Outcome
    answer: ProviderAnswer
    detail: str = ""
    retry_after: float | None = None  # the provider's own wait, with a 429


# The provider accepted it: every sent message's fate, made once (the hot path's).
ACCEPTED = Fate(Outcome.SENT, ProviderAnswer.ACCEPTED)
# The ends of a request that never reached the provider: the gate hears NO_ANSWER.
CLIENT_DELETED = Fate(Outcome.FAILED, ProviderAnswer.NO_ANSWER, "client was deleted")
PAUSED = Fate(Outcome.DEFERRED, ProviderAnswer.NO_ANSWER, "sending paused")
NOT_SENDABLE = Fate(Outcome.DEFERRED, ProviderAnswer.NO_ANSWER, "mailing not sendable now")
TOO_LATE = Fate(Outcome.EXPIRED, ProviderAnswer.NO_ANSWER, "could not finish before the end")
STOPPED = Fate(Outcome.DEFERRED, ProviderAnswer.NO_ANSWER, "sender stopped")

# (the transport's exception, what it means): the first row that matches wins; `permanent` only
# says so of a plain TransportError (a refused token or a 429 is never the message's fault).
FATES: tuple[tuple[type[TransportError], bool | None, Outcome, ProviderAnswer], ...] = (
    (TransportThrottled, None, Outcome.THROTTLED, ProviderAnswer.THROTTLED),  # we go too fast
    (TransportAuthError, None, Outcome.DEFERRED, ProviderAnswer.AUTH_REFUSED),  # every message waits
    (TransportError, True, Outcome.FAILED, ProviderAnswer.REJECTED),  # this message, never
    (TransportError, False, Outcome.RETRY, ProviderAnswer.ERROR),  # 5xx, garbage, refused connection
)
# (outcome, answer, detail) of a request one of its limits cut: at the end or by a stopping worker
# it may have reached the provider; without an answer in time it is tried again.
CUT_FATES = {
    Cut.TIMEOUT: (Outcome.RETRY, ProviderAnswer.ERROR, None),  # detail: no_answer_within(timeout)
    Cut.END: (Outcome.UNKNOWN, ProviderAnswer.NO_ANSWER, "cut at the mailing's end"),
    Cut.STOP: (Outcome.UNKNOWN, ProviderAnswer.NO_ANSWER, "cut by a stopping worker"),
}


def fate_of(ended_by: Exception | Cut | None, *, request_timeout: float) -> Fate:
    """The fate of a request that was sent: None when the provider accepted it, else the exception
    it raised or the limit that cut it."""
    if ended_by is None:
        return ACCEPTED
    if isinstance(ended_by, Cut):
        outcome, answer, detail = CUT_FATES[ended_by]
        return Fate(outcome, answer, detail or no_answer_within(request_timeout))
    if not isinstance(ended_by, TransportError):
        # A surprise (a bug, a library's exception): tried again instead of staying claimed until
        # its lease runs out.
        return Fate(Outcome.RETRY, ProviderAnswer.ERROR, f"unexpected {type(ended_by).__name__}")
    outcome, answer = next(
        (outcome, answer)
        for kind, permanent, outcome, answer in FATES
        if isinstance(ended_by, kind) and permanent in (None, ended_by.permanent)
    )
    return Fate(outcome, answer, ended_by.detail, getattr(ended_by, "retry_after", None))


@dataclass(frozen=True, slots=True)
class Result:
    """One claimed message's outcome, written back by `messages_record` under its claim's token."""

    id: int
    token: UUID
    outcome: Outcome
    attempt: int
    detail: str = ""
    # When the provider's answer came: an acceptance's sent_at, which the write may follow by a
    # flush interval (past the mailing's end, for an answer that came just before it).
    answered_at: datetime | None = None
    # Of an acceptance: the provider that took it and its own id for it.
    provider: str = ""
    provider_message_id: str = ""
