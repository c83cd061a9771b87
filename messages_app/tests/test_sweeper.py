"""The sweeper releases what dead senders left behind and expires what ended mailings left unsent."""

import logging
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import services, tasks
from messages_app.models import Message
from messages_app.sending.outcomes import Outcome, Result
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


@pytest.mark.parametrize(
    ("lost_claims", "becomes", "error"),
    [("resend", Status.PENDING, ""), ("unknown", Status.UNKNOWN, "its sender died after claiming it")],
)
def test_a_message_whose_sender_died_is_sent_again_or_ends_unknown_as_lost_claims_say(
    settings, lost_claims, becomes, error
):
    settings.SENDER_LOST_CLAIMS = lost_claims
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
    assert (orphan.status, orphan.lease_until, orphan.attempts, orphan.last_error) == (
        becomes,
        None,
        1,
        error,
    )
    assert orphan.next_attempt_at <= timezone.now()  # due at once, when sent again
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


def test_a_late_acceptance_from_a_slow_sender_settles_a_claim_ended_unknown(settings):
    settings.SENDER_LOST_CLAIMS = "unknown"
    mailing = launched()
    message = MessageFactory(mailing=mailing, next_attempt_at=timezone.now() - timedelta(hours=1))
    a_minute_ago = timezone.now() - timedelta(minutes=1)
    claim = services.messages_claim(mailing_id=mailing.pk, limit=1, now=a_minute_ago)
    services.messages_release_expired_leases(now=timezone.now())
    message.refresh_from_db()
    assert message.status == Status.UNKNOWN

    services.messages_record(results=[Result(message.pk, claim.token, Outcome.SENT, 1)], now=timezone.now())

    message.refresh_from_db()
    assert message.status == Status.SENT


def test_a_message_with_an_unanswered_attempt_ends_unknown_not_expired():
    ended = launched(started_ago=timedelta(hours=2), ends_in=-timedelta(minutes=1))
    maybe_sent = MessageFactory(mailing=ended, attempts=2, unanswered=True, last_error="no answer within 6 s")
    never_tried = MessageFactory(mailing=ended)

    tasks.sweep_messages()

    maybe_sent.refresh_from_db()
    never_tried.refresh_from_db()
    assert (maybe_sent.status, maybe_sent.last_error) == (Status.UNKNOWN, "no answer within 6 s")
    assert never_tried.status == Status.EXPIRED


def test_cancel_ends_a_message_with_an_unanswered_attempt_unknown(operator):
    mailing = launched()
    maybe_sent = MessageFactory(mailing=mailing, attempts=1, unanswered=True)
    never_tried = MessageFactory(mailing=mailing)

    services.mailing_cancel(mailing=mailing, user=operator)

    assert {m.pk: (m.status, m.last_error) for m in Message.objects.filter(mailing=mailing)} == {
        maybe_sent.pk: (Status.UNKNOWN, services.CANCELLED_ERROR),
        never_tried.pk: (Status.EXPIRED, services.CANCELLED_ERROR),
    }


def logged_ids(caplog, words: str) -> list[int]:
    """The message ids named by the log lines that contain `words`, in order."""
    return [
        int(found)
        for record in caplog.records
        if words in record.getMessage()
        for found in re.findall(r"\b\d+\b", record.getMessage().rpartition(": ")[2])
    ]


def test_every_message_the_sweeper_releases_or_ends_is_named_in_the_log(caplog, monkeypatch):
    monkeypatch.setattr(services, "ID_BATCH", 2)  # a line per batch: three lines for five messages
    running, ended = launched(), launched(started_ago=timedelta(hours=2), ends_in=-timedelta(minutes=1))
    ago = timezone.now() - timedelta(seconds=1)
    orphans = MessageFactory.create_batch(3, mailing=running, status=Status.SENDING, lease_until=ago)
    unsent = MessageFactory.create_batch(5, mailing=ended)
    maybe_sent = MessageFactory(mailing=ended, unanswered=True)

    with caplog.at_level(logging.INFO, logger="messages_app.services"):
        tasks.sweep_messages()

    assert sorted(logged_ids(caplog, "released to be sent again")) == [m.pk for m in orphans]
    assert sorted(logged_ids(caplog, "expired: the mailing ended")) == [m.pk for m in unsent]
    assert logged_ids(caplog, "ended unknown, an attempt never answered") == [maybe_sent.pk]
    expiries = [r for r in caplog.records if "expired: the mailing ended" in r.getMessage()]
    assert len(expiries) == 3 and all(r.mailing_id == ended.pk for r in expiries)


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
