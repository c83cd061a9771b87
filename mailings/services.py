import logging
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Max, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from clients.models import Client
from messages_app.selectors import message_counts_by_mailing
from messages_app.sending.windows import WindowGuard
from messages_app.services import messages_create_for_clients, messages_expire_cancelled
from ops import metrics
from ops.audit import audit

from .models import Mailing, MailingState, TestSend

log = logging.getLogger(__name__)

# Its messages were created from these, so they are frozen once the mailing is launched.
FROZEN_AFTER_LAUNCH = frozenset(
    {
        "text",
        "filter_operator_code",
        "filter_tag",
        "filter_operator_codes",
        "filter_tags",
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
        super().__init__(
            f"Mailing {mailing.pk} was launched at {mailing.launched_at.isoformat()} and its messages "
            f"were created from {', '.join(fields)}, which can no longer change; only end_at can."
        )


def mailing_update(*, mailing: Mailing, data: dict[str, Any]) -> Mailing:
    """Applies validated field values to the mailing; refuses to change frozen fields once launched.

    Values equal to the stored ones are no change, so a full replacement that repeats them passes.
    Raises MailingLaunchedError.
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
        if changed:
            for name, value in changed.items():
                setattr(mailing, name, value)
            # Only these columns: the fan-out bookkeeping belongs to the launcher.
            mailing.save(update_fields=[*changed, "updated_at"])
    return mailing


# --- Launch -------------------------------------------------------------------------------------


def fanout_lease() -> timedelta:
    """A launcher renews its lease after every batch; a dead one's runs out and the scanner takes over."""
    return timedelta(seconds=settings.FANOUT_LEASE)


def mailing_launch(*, mailing_id: int) -> bool:
    """Create the mailing's messages batch by batch. False: nothing to do.

    The senders see the first batch's messages within a second (they poll `Mailing.objects.sendable`),
    so sending starts while the fan-out goes on.

    Safe to call any number of times, concurrently too: the lease lets one launcher work at a time,
    the checkpoint (fanout_cursor) lets the next resume where a dead one stopped, and the unique
    (mailing, client) constraint makes a replayed batch insert nothing. The audience is fixed at
    launch: a matching client created after the fan-out has passed its id is not included.
    """
    now = timezone.now()
    claimed = (
        Mailing.objects.filter(pk=mailing_id)
        .due_for_launch(now)
        .update(fanout_lease_until=now + fanout_lease(), launched_at=Coalesce("launched_at", Value(now)))
    )
    if not claimed:
        return False
    mailing = Mailing.objects.get(pk=mailing_id)
    log.info(
        "mailing=%s launch: fan-out to %s from client %s",
        mailing.pk,
        mailing.audience_description,
        mailing.fanout_cursor,
    )
    recipients = mailing.recipients().order_by("id")
    window = WindowGuard.for_mailing(mailing)
    cursor, created = mailing.fanout_cursor, 0
    while timezone.now() < mailing.end_at:
        remaining = recipients.filter(id__gt=cursor)
        boundary = remaining.values_list("id", flat=True)[settings.FANOUT_BATCH_SIZE - 1 :].first()
        last_id = boundary if boundary is not None else remaining.aggregate(last=Max("id"))["last"]
        if last_id is None:
            break
        with transaction.atomic():
            now = timezone.now()
            batch = messages_create_for_clients(
                mailing_id=mailing.pk,
                clients=remaining.filter(id__lte=last_id),
                now=now,
                openings=window.closed_zones(now),  # outside their local window: due at its opening
            )
            created, cursor = created + batch, last_id
            still_live = Mailing.objects.filter(pk=mailing.pk, cancelled_at__isnull=True).update(
                fanout_cursor=cursor,
                fanout_lease_until=timezone.now() + fanout_lease(),
                audience_size=Coalesce("audience_size", 0) + batch,
            )
        metrics.FANOUT_MESSAGES.inc(batch)  # after commit: the rows exist
        if not still_live:
            messages_expire_cancelled(mailing_id=mailing.pk)  # cancelled while this batch was written
            log.info("mailing=%s launch: cancelled, fan-out stops", mailing.pk)
            return True
    Mailing.objects.filter(pk=mailing.pk).update(
        fanout_completed_at=timezone.now(),
        fanout_lease_until=None,
        audience_size=Coalesce("audience_size", 0),
    )
    log.info("mailing=%s launch: fan-out complete, %s messages created in this run", mailing.pk, created)
    return True


# --- Operators' actions ---------------------------------------------------------------------------


class MailingStateError(Exception):
    """The action makes no sense in the mailing's current state."""

    def __init__(self, mailing: Mailing, state: MailingState, action: str, allowed: str):
        self.mailing = mailing
        self.state = state
        super().__init__(f"Mailing {mailing.pk} is {state}: it cannot be {action}; only {allowed} ones can.")


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


def mailing_cancel(*, mailing: Mailing, user) -> Mailing:
    """Stop for good: unsent messages expire with last_error "mailing cancelled" (a request already
    in flight may still be accepted, and counts as sent). Final: a cancelled mailing never sends
    again. Raises MailingStateError unless scheduled, running or paused.
    """
    now = timezone.now()
    with transaction.atomic():
        mailing = _locked(mailing)
        _require_state(
            mailing, now, "cancelled", MailingState.SCHEDULED, MailingState.RUNNING, MailingState.PAUSED
        )
        mailing.cancelled_at = now
        mailing.save(update_fields=["cancelled_at", "updated_at"])
        expired = messages_expire_cancelled(mailing_id=mailing.pk)
    audit(name="mailing", pk=mailing.pk, done=f"cancelled ({expired} unsent messages expired)", user=user)
    return mailing


class MailingHistoryError(Exception):
    """Deleting the mailing would delete its messages, and the caller did not ask for that."""


def mailing_delete(*, mailing: Mailing, user, with_history: bool) -> None:
    """The one deletion rule of the API and the admin: a mailing never launched can always go; a
    launched one only once finished or cancelled (cancel it first), and since its messages go with
    it, only when the caller asks for that (with_history). Raises MailingStateError or
    MailingHistoryError.
    """
    now = timezone.now()
    with transaction.atomic():
        mailing = _locked(mailing)
        if not mailing.may_be_deleted(now):
            raise MailingStateError(
                mailing, mailing.state_at(now), "deleted", "never launched, finished or cancelled"
            )
        # Whether it has messages, from the messages themselves (one index probe): the tallies,
        # derived, give only the number for the message and the audit line.
        has_messages = mailing.is_launched and mailing.messages.exists()
        messages = message_counts_by_mailing([mailing.pk])[mailing.pk]["total"] if has_messages else 0
        if has_messages and not with_history:
            raise MailingHistoryError(
                f"Mailing {mailing.pk} has {messages} messages, which would be deleted with it; "
                "ask for that with ?with_history=true."
            )
        mailing_id = mailing.pk
        mailing.delete()
    audit(
        name="mailing",
        pk=mailing_id,
        done=f"deleted with its {messages} messages" if has_messages else "deleted",
        user=user,
    )


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
        local_window_start=mailing.local_window_start,  # still nobody's night
        local_window_end=mailing.local_window_end,
    )
    if not resend.recipients().exists():
        raise MailingNothingToResendError(f"Mailing {mailing.pk} has no failed or expired message to resend.")
    resend.save()  # launches at once when its window holds the present (mailings.signals)
    audit(name="mailing", pk=mailing.pk, done=f"resent as mailing {resend.pk}", user=user)
    return resend


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
        transaction.on_commit(
            lambda: current_app.send_task("messages_app.tasks.send_test_messages", args=(ids,))
        )
    audit(
        name="mailing", pk=mailing.pk, done=f"test-sent to clients {client_ids} (test sends {ids})", user=user
    )
    return sends
