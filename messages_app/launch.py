"""A mailing's launch: the fan-out that creates one pending message per recipient.

Run by the launch task (tasks.launch_mailing), which mailings enqueue by name. A module of its own
beside services: the fan-out asks the window guard (messages_app.windows), which calls services, which
zones are closed.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from mailings.models import Mailing
from ops import metrics

from . import services
from .windows import WindowGuard

log = logging.getLogger(__name__)


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
        clients = remaining.filter(id__lte=last_id)
        with transaction.atomic():
            now = timezone.now()
            batch = services.messages_create_for_clients(
                mailing_id=mailing.pk,
                clients=clients.reachable(),  # never a message for a phone on the opt-out list
                now=now,
                openings=window.closed_zones(now),  # outside their local window: due at its opening
            )
            created, cursor = created + batch, last_id
            still_live = Mailing.objects.filter(pk=mailing.pk, cancelled_at__isnull=True).update(
                fanout_cursor=cursor,
                fanout_lease_until=timezone.now() + fanout_lease(),
                audience_size=Coalesce("audience_size", 0) + batch,
                audience_opted_out=Coalesce("audience_opted_out", 0) + clients.opted_out().count(),
            )
        metrics.FANOUT_MESSAGES.inc(batch)  # after commit: the rows exist
        if not still_live:
            # Cancelled while this batch was written: its messages expire too.
            services.messages_expire_cancelled(mailing_id=mailing.pk)
            log.info("mailing=%s launch: cancelled, fan-out stops", mailing.pk)
            return True
    Mailing.objects.filter(pk=mailing.pk).update(
        fanout_completed_at=timezone.now(),
        fanout_lease_until=None,
        audience_size=Coalesce("audience_size", 0),
        audience_opted_out=Coalesce("audience_opted_out", 0),
    )
    log.info("mailing=%s launch: fan-out complete, %s messages created in this run", mailing.pk, created)
    return True
