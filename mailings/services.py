"""Writes of mailings: edits and the operators' actions on a mailing alone.

What also changes a mailing's messages lives with them (messages depend on mailings): the launch's
fan-out in messages_app.launch, cancelling (its unsent messages expire) and deleting (its messages
go with it) in messages_app.services.
"""

from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from clients.models import Client
from ops.audit import audit
from ops.enqueue import enqueue_on_commit

from .models import Mailing, MailingState, TestSend

# Its messages were created from these, so they are frozen once the mailing is launched.
FROZEN_AFTER_LAUNCH = frozenset(
    {
        "text",
        "filter_operator_code",
        "filter_tag",
        "filter_operator_codes",
        "filter_tags",
        "cap_exempt",
        "start_at",
        "local_window_start",
        "local_window_end",
    }
)
EDITABLE_FIELDS = FROZEN_AFTER_LAUNCH | {"end_at"}


class MailingLaunchedError(Exception):
    """An edit would change what a launched mailing's messages were made from."""

    def __init__(self, mailing: Mailing, fields: list[str]):
        self.mailing = mailing
        self.fields = fields
        launched_at = mailing.launched_at.isoformat() if mailing.launched_at else "launch"
        super().__init__(
            f"Mailing {mailing.pk} was launched at {launched_at} and its messages "
            f"were created from {', '.join(fields)}, which can no longer change; only end_at can."
        )


# A running or paused mailing's end may move earlier only to a moment at least this far ahead. Senders
# learn of a new end within about a second and a request in flight runs to its timeout, so a closer
# end is a stop in all but name (cancel says that, and keeps its unsent messages' reason); the margin
# also absorbs the clock of whoever typed the end running a little ahead of the server's.
END_MIN_LEAD = timedelta(minutes=1)


class MailingEndTooSoonError(Exception):
    """An end moved earlier to the past, or too near the present, on a running or paused mailing."""

    def __init__(self, mailing: Mailing, state: MailingState, end_at: datetime, earliest: datetime):
        super().__init__(
            f"Mailing {mailing.pk} is {state}: its end may move earlier only to {earliest.isoformat()} "
            f"or later (at least {END_MIN_LEAD.total_seconds():.0f} s ahead), not {end_at.isoformat()}. "
            f"To stop it now, cancel it (POST /api/v1/mailings/{mailing.pk}/cancel/)."
        )


def mailing_end_check(*, mailing: Mailing, end_at: datetime, now: datetime) -> None:
    """Raises MailingEndTooSoonError if `end_at` would move a running or paused mailing's end
    earlier than END_MIN_LEAD from now: its unsent messages would expire at once, for good."""
    state = mailing.state_at(now)
    earliest = now + END_MIN_LEAD
    if state in (MailingState.RUNNING, MailingState.PAUSED) and end_at < mailing.end_at and end_at < earliest:
        raise MailingEndTooSoonError(mailing, state, end_at, earliest)


def mailing_update(*, mailing: Mailing, data: dict[str, Any]) -> Mailing:
    """Applies validated field values to the mailing; refuses to change frozen fields once launched,
    and a running or paused mailing's end moved to the past or near it (mailing_end_check).

    Values equal to the stored ones are no change, so a full replacement that repeats them passes.
    Raises MailingLaunchedError, MailingEndTooSoonError.
    """
    unknown = set(data) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        # Read under lock: the launcher may have started since the caller loaded the mailing.
        mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
        changed = {name: value for name, value in data.items() if getattr(mailing, name) != value}
        frozen = sorted(FROZEN_AFTER_LAUNCH.intersection(changed))
        if mailing.is_launched and frozen:
            raise MailingLaunchedError(mailing, frozen)
        if "end_at" in changed:
            mailing_end_check(mailing=mailing, end_at=changed["end_at"], now=timezone.now())
        if changed:
            for name, value in changed.items():
                setattr(mailing, name, value)
            columns = [*changed, "updated_at"]
            if "text" in changed:
                mailing.text_is_template = True  # validated as one, whatever the text before it was
                columns.append("text_is_template")
            # Only these columns: the fan-out bookkeeping belongs to the launcher.
            mailing.save(update_fields=columns)
    return mailing


# --- Operators' actions ---------------------------------------------------------------------------


class MailingStateError(Exception):
    """The action makes no sense in the mailing's current state."""

    def __init__(self, mailing: Mailing, state: MailingState, action: str, allowed: str):
        self.mailing = mailing
        self.state = state
        super().__init__(f"Mailing {mailing.pk} is {state}: it cannot be {action}; only {allowed} ones can.")


class MailingWindowPassedError(Exception):
    """Launching would send nothing: the mailing's end has passed."""


def _locked(mailing: Mailing) -> Mailing:
    """The mailing re-read under a row lock: another operator may have acted since it was loaded."""
    return Mailing.objects.select_for_update().get(pk=mailing.pk)


def _require_state(mailing: Mailing, now, action: str, *allowed: MailingState) -> MailingState:
    state = mailing.state_at(now)
    if state not in allowed:
        raise MailingStateError(mailing, state, action, " or ".join(allowed))
    return state


def mailing_pause(*, mailing: Mailing, user) -> Mailing:
    """Stop sending: the mailing leaves Mailing.objects.sendable, so no claim takes its messages any
    more and every sender gives back its unstarted claims within about a second (its refresher);
    unsent messages stay pending.
    A scheduled mailing can be paused too: it launches but sends nothing until resumed.
    Raises MailingStateError unless scheduled or running.
    """
    now = timezone.now()
    with transaction.atomic():
        mailing = _locked(mailing)
        _require_state(mailing, now, "paused", MailingState.SCHEDULED, MailingState.RUNNING)
        mailing.paused_at = now
        mailing.save(update_fields=["paused_at", "updated_at"])
    audit(name="mailing", pk=mailing.pk, done="paused", user=user)
    return mailing


def mailing_launch_draft(*, mailing: Mailing, user) -> Mailing:
    """A draft becomes an ordinary mailing: it starts at once when its window holds the present
    (mailings.signals), at start_at when later. Raises MailingStateError unless a draft, and
    MailingWindowPassedError when its end has passed (move the window first).
    """
    now = timezone.now()
    with transaction.atomic():
        mailing = _locked(mailing)
        _require_state(mailing, now, "launched", MailingState.DRAFT)
        if mailing.end_at <= now:
            raise MailingWindowPassedError(
                f"Mailing {mailing.pk} ended at {mailing.end_at.isoformat()}: it would send nothing; "
                "move start_at and end_at, then launch it."
            )
        mailing.draft = False
        mailing.save(update_fields=["draft", "updated_at"])
    audit(name="mailing", pk=mailing.pk, done="launched from draft", user=user)
    return mailing


def mailing_resume(*, mailing: Mailing, user) -> Mailing:
    """Continue a paused mailing where it stopped, never after its end (a paused mailing whose end
    has passed is finished, and its unsent messages expire). Raises MailingStateError unless paused.
    """
    now = timezone.now()
    with transaction.atomic():
        mailing = _locked(mailing)
        _require_state(mailing, now, "resumed", MailingState.PAUSED)
        mailing.paused_at = None
        mailing.save(update_fields=["paused_at", "updated_at"])  # sendable again: senders see it in ~1 s
    audit(name="mailing", pk=mailing.pk, done="resumed", user=user)
    return mailing


def mailing_mark_cancelled(*, mailing: Mailing) -> Mailing:
    """Marks the mailing cancelled, under its row lock, inside the caller's transaction (the
    operators' action is messages_app.services.mailing_cancel, which expires its unsent messages in
    the same transaction). Final. Raises MailingStateError unless scheduled, running or paused.
    """
    now = timezone.now()
    mailing = _locked(mailing)
    _require_state(
        mailing, now, "cancelled", MailingState.SCHEDULED, MailingState.RUNNING, MailingState.PAUSED
    )
    mailing.cancelled_at = now
    mailing.save(update_fields=["cancelled_at", "updated_at"])
    return mailing


class MailingNothingToResendError(Exception):
    pass


def mailing_resend(
    *, mailing: Mailing, user, start_at: datetime, end_at: datetime, text: str = ""
) -> Mailing:
    """A new mailing, in its own window, to the clients whose messages of this one failed or
    expired (deleted clients excepted); the same text unless another is given. Only once the
    mailing is finished or cancelled, so that its failures are known. Raises MailingStateError,
    MailingNothingToResendError.
    """
    now = timezone.now()
    state = mailing.state_at(now)
    if state not in (MailingState.FINISHED, MailingState.CANCELLED):
        raise MailingStateError(mailing, state, "resent", "finished or cancelled")
    resend = Mailing(
        resend_of=mailing,
        start_at=start_at,
        end_at=end_at,
        text=text or mailing.text,
        text_is_template=mailing.text_is_template if not text else True,
        local_window_start=mailing.local_window_start,  # still nobody's night
        local_window_end=mailing.local_window_end,
    )
    if not resend.recipients().exists():
        raise MailingNothingToResendError(f"Mailing {mailing.pk} has no failed or expired message to resend.")
    resend.save()  # launches at once when its window holds the present (mailings.signals)
    audit(name="mailing", pk=mailing.pk, done=f"resent as mailing {resend.pk}", user=user)
    return resend


def _test_sends_not_enqueued(ids: list[int]) -> None:
    TestSend.objects.filter(pk__in=ids, status=TestSend.Status.PENDING).update(
        status=TestSend.Status.FAILED,
        detail="Not sent: the task queue did not answer. Try again.",
        finished_at=timezone.now(),
    )


def mailing_test_send(*, mailing: Mailing, user, client_ids: list[int]) -> list[TestSend]:
    """Sends the mailing's text to these clients now, in any state, outside its messages and
    statistics: one TestSend row each, delivered by a worker (messages_app.tasks.send_test_messages)
    after commit. Raises Client.DoesNotExist naming the unknown ids.
    """
    found = set(Client.objects.filter(pk__in=client_ids).values_list("pk", flat=True))
    if missing := sorted(set(client_ids) - found):
        raise Client.DoesNotExist(f"No client with id {', '.join(map(str, missing))}.")
    with transaction.atomic():
        sends = TestSend.objects.bulk_create(
            [TestSend(mailing=mailing, client_id=client_id, requested_by=user) for client_id in client_ids]
        )
        ids = [send.pk for send in sends]
        enqueue_on_commit(
            "messages_app.tasks.send_test_messages",
            (ids,),
            instead=f"test sends {ids} failed, to be tried again",
            on_failure=partial(_test_sends_not_enqueued, ids),
        )
    audit(
        name="mailing", pk=mailing.pk, done=f"test-sent to clients {client_ids} (test sends {ids})", user=user
    )
    return sends
