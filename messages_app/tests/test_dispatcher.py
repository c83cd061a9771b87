"""The dispatcher against a scripted provider over real HTTP, with the database as the truth.

These tests commit (transactional_db): the dispatcher works in its own database thread.
"""

import threading
import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import services
from messages_app.dispatcher import Dispatcher
from messages_app.models import Message
from messages_app.tests.factories import MessageFactory
from messages_app.transports.probe import ProbeTransport

pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
OK = b'{"code": 0, "message": "OK"}'


@pytest.fixture(autouse=True)
def no_pause_left_over():
    cache.delete(services.PAUSE_KEY)
    yield
    cache.delete(services.PAUSE_KEY)


def running_mailing(*, ends_in: float = 3600) -> Mailing:
    now = timezone.now()
    mailing = MailingFactory(start_at=now + timedelta(days=1), end_at=now + timedelta(days=2))
    # Moved into its window without save(): the launch hook is not what these tests are about.
    Mailing.objects.filter(pk=mailing.pk).update(
        start_at=now - timedelta(minutes=1),
        end_at=now + timedelta(seconds=ends_in),
        launched_at=now,
        fanout_completed_at=now,
    )
    mailing.refresh_from_db()
    return mailing


def messages_of(mailing: Mailing, count: int) -> list[Message]:
    return [MessageFactory(mailing=mailing, client=ClientFactory()) for _ in range(count)]


def dispatcher(mailing: Mailing, provider, **overrides) -> Dispatcher:
    options = {
        "concurrency": 10,
        "run_seconds": 10.0,
        "end_margin": 0.05,
        "breaker_threshold": 1000,
        "breaker_pause": 30.0,
        "auth_pause": 30.0,
    }
    options.update(overrides)
    transport = ProbeTransport(
        base_url=provider.url, token="t", connect_timeout=1.0, read_timeout=5.0, max_connections=50
    )
    return Dispatcher(mailing.pk, transport=transport, **options)


def statuses(mailing: Mailing) -> dict[str, int]:
    found = {}
    for status in Message.objects.filter(mailing=mailing).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def test_every_message_is_sent_once_and_marked_sent(provider):
    mailing = running_mailing()
    messages = messages_of(mailing, 25)

    report = dispatcher(mailing, provider).run()

    assert report.sent == 25
    assert report.next_run_in is None
    assert sorted(msg_id for msg_id, _ in provider.accepted) == sorted(m.id for m in messages)
    for message in Message.objects.filter(mailing=mailing):
        assert (message.status, message.attempts, message.lease_until) == (Status.SENT, 1, None)
        assert message.sent_at is not None


def test_rejections_fail_and_overload_is_retried_later_with_backoff(provider):
    mailing = running_mailing()
    rejected, invalid, overloaded, fine = messages_of(mailing, 4)
    answers = {
        rejected.id: (200, b'{"code": 7, "message": "blocked"}', 0),
        invalid.id: (400, b"", 0),
        overloaded.id: (503, b"", 0),
    }
    provider.script = lambda msg_id, attempt: answers.get(msg_id, (200, OK, 0))

    before = timezone.now()
    dispatcher(mailing, provider, run_seconds=0.5).run()

    (
        rejected.refresh_from_db(),
        invalid.refresh_from_db(),
        overloaded.refresh_from_db(),
        fine.refresh_from_db(),
    )
    assert (rejected.status, invalid.status, fine.status) == (Status.FAILED, Status.FAILED, Status.SENT)
    assert "code 7" in rejected.last_error
    assert overloaded.status == Status.PENDING
    assert overloaded.attempts >= 1
    assert overloaded.last_error == "HTTP 503"
    assert overloaded.next_attempt_at >= before


def test_retried_message_is_delivered_when_the_provider_recovers(provider):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    provider.script = lambda msg_id, attempt: (503, b"", 0) if attempt <= 2 else (200, OK, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(milliseconds=50))
        report = dispatcher(mailing, provider).run()

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.SENT, 3)
    assert report.retried == 2
    assert [msg_id for msg_id, _ in provider.accepted] == [message.id]


def test_consecutive_failures_open_the_breaker_for_every_dispatcher(provider):
    mailing = running_mailing()
    messages_of(mailing, 30)
    provider.script = lambda msg_id, attempt: (500, b"", 0)

    report = dispatcher(mailing, provider, concurrency=1, breaker_threshold=5, run_seconds=1.0).run()

    assert len(provider.requests) == 5  # then the breaker held the rest back
    assert services.provider_paused_until(now=timezone.now()) is not None
    assert report.next_run_in is not None and report.next_run_in > 20
    assert statuses(mailing) == {Status.PENDING: 30}
    untouched = Message.objects.filter(mailing=mailing, attempts=0).count()
    assert untouched == 25


def test_refused_token_pauses_sending_and_marks_nothing_failed(provider):
    mailing = running_mailing()
    messages_of(mailing, 12)
    provider.script = lambda msg_id, attempt: (401, b"", 0)

    report = dispatcher(mailing, provider, concurrency=4, auth_pause=60.0).run()

    assert statuses(mailing) == {Status.PENDING: 12}
    assert report.failed == 0
    assert len(provider.requests) <= 4  # at most the requests already in flight
    paused_until = services.provider_paused_until(now=timezone.now())
    assert paused_until is not None and paused_until > timezone.now() + timedelta(seconds=50)
    assert not Message.objects.filter(mailing=mailing, attempts__gt=0).exists()


def test_nothing_is_accepted_after_the_end_and_the_rest_expires(provider):
    mailing = running_mailing(ends_in=1.0)
    messages_of(mailing, 20)
    provider.script = lambda msg_id, attempt: (200, OK, 0.4)

    dispatcher(mailing, provider, concurrency=5).run()

    end = mailing.end_at.timestamp()
    assert provider.accepted, "some messages fit before the end"
    assert all(at <= end for _, at in provider.accepted)
    found = statuses(mailing)
    assert set(found) <= {Status.SENT, Status.EXPIRED}
    assert found[Status.SENT] == len(provider.accepted)
    assert found[Status.EXPIRED] == 20 - len(provider.accepted)


def test_moving_the_end_earlier_cuts_requests_already_in_flight(provider):
    mailing = running_mailing()
    messages_of(mailing, 3)
    provider.script = lambda msg_id, attempt: (200, OK, 3.0)
    new_end = timezone.now() + timedelta(seconds=1.2)

    def move_end():
        time.sleep(0.2)
        Mailing.objects.filter(pk=mailing.pk).update(end_at=new_end)

    mover = threading.Thread(target=move_end)
    mover.start()
    started = time.monotonic()
    dispatcher(mailing, provider).run()
    mover.join()

    assert time.monotonic() - started < 2.8
    assert provider.accepted == []
    assert statuses(mailing) == {Status.EXPIRED: 3}


def test_message_of_a_deleted_client_fails_without_a_request(provider):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    message.client.delete()

    dispatcher(mailing, provider).run()

    message.refresh_from_db()
    assert (message.status, message.client_id) == (Status.FAILED, None)
    assert provider.requests == []


def test_two_dispatchers_share_a_mailing_without_sending_anything_twice(provider):
    mailing = running_mailing()
    messages_of(mailing, 60)
    provider.script = lambda msg_id, attempt: (200, OK, 0.01)
    reports = []

    def run():
        reports.append(dispatcher(mailing, provider, concurrency=5).run())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted_ids = [msg_id for msg_id, _ in provider.accepted]
    assert len(accepted_ids) == len(set(accepted_ids)) == 60
    assert sum(report.sent for report in reports) == 60
    assert statuses(mailing) == {Status.SENT: 60}


def test_after_a_pause_one_probe_goes_alone_before_full_speed_resumes(provider):
    mailing = running_mailing()
    messages_of(mailing, 40)
    refusing_until = time.time() + 1.0
    provider.script = lambda msg_id, attempt: (401, b"", 0) if time.time() < refusing_until else (200, OK, 0)

    dispatcher(mailing, provider, concurrency=10, auth_pause=0.3).run()

    refused = [at for msg_id, at in provider.requests if at < refusing_until]
    assert statuses(mailing) == {Status.SENT: 40}
    # The first wave, then about one probe per 0.3 s pause: not ten requests per pause.
    assert len(refused) <= 10 + 5


def hold_after(mailing: Mailing, seconds: float, **fields) -> threading.Thread:
    """Pauses or cancels the mailing (fields to set) from another thread, as an operator's request would."""

    def hold():
        time.sleep(seconds)
        Mailing.objects.filter(pk=mailing.pk).update(**fields)
        connection.close()  # this thread's own connection, or the test database cannot be dropped

    thread = threading.Thread(target=hold)
    thread.start()
    return thread


def test_a_paused_mailing_stops_and_its_unsent_claims_go_back_to_pending(provider):
    mailing = running_mailing()
    messages_of(mailing, 60)
    provider.script = lambda msg_id, attempt: (200, OK, 0.1)

    holder = hold_after(mailing, 0.3, paused_at=timezone.now())
    dispatcher(mailing, provider, concurrency=5).run()
    holder.join()

    found = statuses(mailing)
    assert set(found) == {Status.SENT, Status.PENDING}
    assert found[Status.SENT] == len(provider.accepted)
    # Given back, not attempted: a pause does not grow anyone's backoff.
    assert not Message.objects.filter(mailing=mailing, status=Status.PENDING, attempts__gt=0).exists()
    assert services.messages_claim(mailing_id=mailing.pk, limit=100, now=timezone.now()) == []


def test_a_cancelled_mailing_stops_and_its_unsent_messages_expire_as_cancelled(provider):
    mailing = running_mailing()
    messages_of(mailing, 60)
    provider.script = lambda msg_id, attempt: (200, OK, 0.1)

    holder = hold_after(mailing, 0.3, cancelled_at=timezone.now())
    dispatcher(mailing, provider, concurrency=5).run()
    holder.join()

    found = statuses(mailing)
    assert set(found) == {Status.SENT, Status.EXPIRED}
    assert found[Status.SENT] == len(provider.accepted)
    expired = Message.objects.filter(mailing=mailing, status=Status.EXPIRED)
    assert set(expired.values_list("last_error", flat=True)) == {services.CANCELLED_ERROR}
