import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from messages_app.services import messages_create_for_clients
from messages_app.window_guard import WindowGuard
from ops import metrics

from .models import Mailing

log = logging.getLogger(__name__)

# Its messages were created from these, so they are frozen once the mailing is launched.
FROZEN_AFTER_LAUNCH = frozenset(
    {"text", "filter_operator_code", "filter_tag", "start_at", "local_window_start", "local_window_end"}
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
            created += batch
            cursor = last_id
            Mailing.objects.filter(pk=mailing.pk).update(
                fanout_cursor=cursor, fanout_lease_until=timezone.now() + fanout_lease()
            )
        metrics.FANOUT_MESSAGES.inc(batch)  # after commit: the rows exist
    Mailing.objects.filter(pk=mailing.pk).update(fanout_completed_at=timezone.now(), fanout_lease_until=None)
    log.info("mailing=%s launch: fan-out complete, %s messages created in this run", mailing.pk, created)
    return True
