"""The sweeper releases what dead senders left behind and expires what ended mailings left unsent."""

from datetime import timedelta

import pytest
from django.utils import timezone

from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import services, tasks
from messages_app.models import Message
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db
Status = Message.Status


def launched(*, started_ago=timedelta(minutes=5), ends_in=timedelta(hours=1)) -> Mailing:
    now = timezone.now()
    mailing = MailingFactory()
    Mailing.objects.filter(pk=mailing.pk).update(
        start_at=now - started_ago,
        end_at=now + ends_in,
        launched_at=now - started_ago,
        fanout_completed_at=now - started_ago,
    )
    mailing.refresh_from_db()
    return mailing


def test_message_whose_sender_died_goes_back_to_pending_due_at_once():
    mailing = launched()
    orphan = MessageFactory(
        mailing=mailing, status=Status.SENDING, attempts=1, lease_until=timezone.now() - timedelta(seconds=1)
    )
    in_flight = MessageFactory(
        mailing=mailing, status=Status.SENDING, attempts=1, lease_until=timezone.now() + timedelta(seconds=30)
    )

    tasks.sweep_messages()

    orphan.refresh_from_db()
    in_flight.refresh_from_db()
    assert (orphan.status, orphan.lease_until, orphan.attempts) == (Status.PENDING, None, 1)
    assert orphan.next_attempt_at <= timezone.now()
    assert in_flight.status == Status.SENDING


def test_pending_and_orphaned_messages_of_an_ended_mailing_expire():
    ended = launched(started_ago=timedelta(hours=2), ends_in=-timedelta(minutes=1))
    pending = MessageFactory(mailing=ended)
    orphan = MessageFactory(mailing=ended, status=Status.SENDING, lease_until=timezone.now() - timedelta(1))
    sent = MessageFactory(mailing=ended, status=Status.SENT)

    tasks.sweep_messages()

    assert {m.pk: m.status for m in Message.objects.filter(mailing=ended)} == {
        pending.pk: Status.EXPIRED,
        orphan.pk: Status.EXPIRED,
        sent.pk: Status.SENT,
    }


def test_retry_delay_grows_exponentially_with_full_jitter_up_to_the_cap(settings):
    settings.SENDER_RETRY_BASE = 1.0
    settings.SENDER_RETRY_CAP = 10.0
    delays = {
        attempt: [services.retry_delay(attempt).total_seconds() for _ in range(300)] for attempt in (1, 3, 9)
    }

    assert all(0 <= d <= 1 for d in delays[1])
    assert all(0 <= d <= 4 for d in delays[3]) and max(delays[3]) > 2
    assert all(0 <= d <= 10 for d in delays[9]) and max(delays[9]) > 5
    assert min(delays[9]) < 5  # full jitter: anywhere from zero up
