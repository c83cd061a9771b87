"""The sender against a scripted provider over real HTTP, with the database as the truth.

These tests commit (transactional_db): each sender works in a database thread (and connection)
of its own, so two senders in one test are two real database sessions.
"""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from clients.tests.factories import ClientFactory
from conftest import concurrent_writers
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import services
from messages_app.models import Message, SenderSlot
from messages_app.sending.adaptive import InFlightLimit
from messages_app.sending.gate import ProviderGate
from messages_app.sending.pacing import Pacer
from messages_app.sending.sender import Sender
from messages_app.sending.transports.probe import ProbeTransport
from messages_app.services import Outcome
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
OK = b'{"code": 0, "message": "OK"}'


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


def sender(
    provider, *, breaker_threshold=1000, breaker_pause=30.0, auth_pause=30.0, pacer=None, **overrides
) -> Sender:
    options = {"concurrency": 10, "end_margin": 0.05, "stop_grace": 5.0, "request_timeout": 6.0}
    options.update(overrides)
    transport = ProbeTransport(base_url=provider.url, token="t", connect_timeout=1.0, max_connections=50)
    gate = ProviderGate(
        breaker_threshold=breaker_threshold, breaker_pause=breaker_pause, auth_pause=auth_pause, pacer=pacer
    )
    return Sender(transport=transport, gate=gate, **options)


def run_until_idle(provider, *, seconds: float = 20, **overrides):
    return sender(provider, **overrides).run(until_idle=True, seconds=seconds)


def statuses(mailing: Mailing) -> dict[str, int]:
    found = {}
    for status in Message.objects.filter(mailing=mailing).values_list("status", flat=True):
        found[status] = found.get(status, 0) + 1
    return found


def later(seconds: float, action, *, once=lambda: True, give_up_after: float = 30.0) -> threading.Thread:
    """Runs `action` in a thread `seconds` from now, and not before `once()` holds (never, if it
    does not within `give_up_after` seconds: the test's own assertions then fail, nothing hangs)."""

    def run():
        time.sleep(seconds)
        give_up_at = time.monotonic() + give_up_after
        while not once():
            if time.monotonic() > give_up_at:
                return
            time.sleep(0.02)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_every_message_is_sent_once_and_marked_sent(scripted_provider):
    mailing = running_mailing()
    messages = messages_of(mailing, 25)

    report = run_until_idle(scripted_provider)

    assert report[Outcome.SENT] == 25
    assert sorted(msg_id for msg_id, _ in scripted_provider.accepted) == sorted(m.id for m in messages)
    for message in Message.objects.filter(mailing=mailing):
        assert (message.status, message.attempts, message.lease_until) == (Status.SENT, 1, None)
        assert message.sent_at is not None and message.claim_token is not None


def test_rejections_fail_and_overload_is_retried_later_with_backoff(scripted_provider):
    mailing = running_mailing()
    rejected, invalid, overloaded, fine = messages_of(mailing, 4)
    answers = {
        rejected.id: (200, b'{"code": 7, "message": "blocked"}', 0),
        invalid.id: (400, b"", 0),
        overloaded.id: (503, b"", 0),
    }
    scripted_provider.script = lambda msg_id, attempt: answers.get(msg_id, (200, OK, 0))

    before = timezone.now()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(scripted_provider).run(seconds=1.5)

    for message in (rejected, invalid, overloaded, fine):
        message.refresh_from_db()
    assert (rejected.status, invalid.status, fine.status) == (Status.FAILED, Status.FAILED, Status.SENT)
    assert "code 7" in rejected.last_error
    assert (overloaded.status, overloaded.attempts, overloaded.last_error) == (Status.PENDING, 1, "HTTP 503")
    assert overloaded.next_attempt_at >= before + timedelta(minutes=4)


def test_retried_message_is_delivered_when_the_provider_recovers(scripted_provider):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    scripted_provider.script = lambda msg_id, attempt: (503, b"", 0) if attempt <= 2 else (200, OK, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(milliseconds=50))
        report = run_until_idle(scripted_provider)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.SENT, 3)
    assert report[Outcome.RETRY] == 2
    assert [msg_id for msg_id, _ in scripted_provider.accepted] == [message.id]


def test_an_unexpected_error_sends_the_message_back_to_pending_and_the_sender_goes_on(
    scripted_provider, caplog
):
    mailing = running_mailing()
    unlucky, fine = messages_of(mailing, 2)
    send = ProbeTransport.send

    async def surprising_send(transport, message):
        if message.id == unlucky.id:
            raise RuntimeError("surprise")
        await send(transport, message)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ProbeTransport, "send", surprising_send)
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        report = sender(scripted_provider).run(seconds=1.5)

    unlucky.refresh_from_db()
    fine.refresh_from_db()
    assert (unlucky.status, unlucky.attempts) == (Status.PENDING, 1)
    assert unlucky.last_error == "unexpected RuntimeError"
    assert unlucky.lease_until is None
    assert fine.status == Status.SENT
    assert (report[Outcome.RETRY], report[Outcome.SENT]) == (1, 1)
    (line,) = [record for record in caplog.records if "unexpected error" in record.getMessage()]
    assert (line.mailing_id, line.message_id, line.client_id) == (mailing.pk, unlucky.id, unlucky.client_id)
    assert "RuntimeError: surprise" in caplog.text


def test_consecutive_failures_open_the_breaker_for_every_sender(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 30)
    scripted_provider.script = lambda msg_id, attempt: (500, b"", 0)

    sender(scripted_provider, concurrency=1, breaker_threshold=5).run(seconds=2.5)

    assert len(scripted_provider.requests) == 5  # then the breaker held the rest back
    assert services.provider_paused_until(now=timezone.now()) > timezone.now() + timedelta(seconds=20)
    assert statuses(mailing) == {Status.PENDING: 30}
    assert Message.objects.filter(mailing=mailing, attempts=0).count() >= 25


def test_refused_token_pauses_sending_and_marks_nothing_failed(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 12)
    scripted_provider.script = lambda msg_id, attempt: (401, b"", 0)

    report = sender(scripted_provider, concurrency=4, auth_pause=60.0).run(seconds=2.5)

    assert statuses(mailing) == {Status.PENDING: 12}
    assert report[Outcome.FAILED] == 0
    assert len(scripted_provider.requests) <= 4  # at most the requests already in flight
    paused_until = services.provider_paused_until(now=timezone.now())
    assert paused_until is not None and paused_until > timezone.now() + timedelta(seconds=50)
    assert not Message.objects.filter(mailing=mailing, attempts__gt=0).exists()


def test_nothing_is_accepted_after_the_end_and_what_was_cut_in_flight_is_unknown_not_expired(
    scripted_provider,
):
    mailing = running_mailing(ends_in=3)
    messages_of(mailing, 60)  # 5 in flight at 0.4 s: far more than fit before the end
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.4)

    run_until_idle(scripted_provider, concurrency=5)

    end = mailing.end_at.timestamp()
    assert scripted_provider.accepted, "some messages fit before the end"
    assert all(at <= end for _, at in scripted_provider.accepted)
    found = statuses(mailing)
    assert set(found) <= {Status.SENT, Status.EXPIRED, Status.UNKNOWN}
    assert found[Status.SENT] == len(scripted_provider.accepted)
    # Requests that reached the provider are sent or unknown, never expired.
    assert found.get(Status.SENT, 0) + found.get(Status.UNKNOWN, 0) == len(scripted_provider.requests)


def provider_errors() -> Counter:
    """The provider errors counted so far, by class (this process's registry)."""
    return Counter(
        {
            sample.labels["error_class"]: sample.value
            for metric in REGISTRY.collect()
            if metric.name == "sms_provider_errors"
            for sample in metric.samples
            if sample.name.endswith("_total")
        }
    )


def test_moving_the_end_earlier_cuts_requests_already_in_flight(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 3)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 4.0)
    errors_before = provider_errors()

    def end_soon():
        Mailing.objects.filter(pk=mailing.pk).update(end_at=timezone.now() + timedelta(seconds=0.5))

    mover = later(0, end_soon, once=lambda: len(scripted_provider.requests) == 3)
    run_until_idle(scripted_provider)
    mover.join()

    assert scripted_provider.accepted == []  # cut before the provider's answer
    assert statuses(mailing) == {Status.UNKNOWN: 3}
    assert provider_errors() - errors_before == Counter(cut=3)


def test_moving_the_end_later_extends_requests_already_in_flight(scripted_provider):
    mailing = running_mailing(ends_in=2.5)
    messages_of(mailing, 3)
    scripted_provider.script = lambda msg_id, attempt: (
        200,
        OK,
        3.5,
    )  # a request may take 6 s (request_timeout)
    new_end = timezone.now() + timedelta(seconds=60)

    mover = later(
        0,
        lambda: Mailing.objects.filter(pk=mailing.pk).update(end_at=new_end),
        once=lambda: scripted_provider.requests,
    )
    run_until_idle(scripted_provider)
    mover.join()

    assert len(scripted_provider.accepted) == 3
    assert statuses(mailing) == {Status.SENT: 3}


def test_a_request_without_an_answer_in_time_is_retried_later_not_cut(scripted_provider):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 3.0)

    errors_before = provider_errors()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        started = time.monotonic()
        sender(scripted_provider, request_timeout=0.3).run(seconds=1.5)

    assert time.monotonic() - started < 2.5  # given up at its own limit, not at the provider's answer
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == (
        Status.PENDING,
        1,
        "no answer within 0.3 s",
    )
    assert provider_errors() - errors_before == Counter(timeout=1)


def test_moving_the_end_later_extends_a_request_only_up_to_its_own_limit(scripted_provider):
    mailing = running_mailing(ends_in=3.0)  # moved before it comes: the sender re-reads ends every second
    (message,) = messages_of(mailing, 1)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 5.0)
    new_end = timezone.now() + timedelta(seconds=60)

    mover = later(
        0,
        lambda: Mailing.objects.filter(pk=mailing.pk).update(end_at=new_end),
        once=lambda: scripted_provider.requests,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(scripted_provider, request_timeout=3.0).run(seconds=4.0)
    mover.join()

    message.refresh_from_db()
    assert (message.status, message.last_error) == (Status.PENDING, "no answer within 3 s")


def test_message_of_a_deleted_client_fails_without_a_request(scripted_provider):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    message.client.delete()

    run_until_idle(scripted_provider)

    message.refresh_from_db()
    assert (message.status, message.client_id) == (Status.FAILED, None)
    assert scripted_provider.requests == []


@concurrent_writers
def test_two_senders_share_a_mailing_without_sending_anything_twice(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 60)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.01)
    reports = []

    threads = [
        threading.Thread(target=lambda: reports.append(run_until_idle(scripted_provider, concurrency=5)))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    accepted_ids = [msg_id for msg_id, _ in scripted_provider.accepted]
    assert len(accepted_ids) == len(set(accepted_ids)) == 60
    assert sum(report[Outcome.SENT] for report in reports) == 60
    assert statuses(mailing) == {Status.SENT: 60}


@concurrent_writers
def test_no_more_senders_on_a_mailing_than_its_slots(scripted_provider, settings):
    settings.SENDERS_PER_MAILING = 2
    mailing = running_mailing()
    messages_of(mailing, 60)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.2)
    reports = []

    threads = [
        threading.Thread(target=lambda: reports.append(run_until_idle(scripted_provider, concurrency=4)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    senders = set(Message.objects.filter(mailing=mailing).values_list("claimed_by", flat=True))
    assert 1 <= len(senders) <= 2
    assert sorted(report[Outcome.SENT] for report in reports)[0] == 0  # the third never claimed
    assert statuses(mailing) == {Status.SENT: 60}


@concurrent_writers  # the small mailing's messages are written while the sender writes
def test_a_new_small_mailing_is_served_beside_a_big_one(scripted_provider):
    big = running_mailing()
    messages_of(big, 600)
    small = running_mailing()
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.05)

    later(0.5, lambda: messages_of(small, 5))
    run_until_idle(scripted_provider, concurrency=10)

    small_ids = set(Message.objects.filter(mailing=small).values_list("id", flat=True))
    order = [msg_id for msg_id, _ in scripted_provider.accepted]
    last_small = max(order.index(msg_id) for msg_id in small_ids)
    # The small one does not wait for the big one's queue: it is done well before the big one is
    # (it appears after about 100 of the big one's sends and is picked up within a refresh).
    assert last_small < 400
    assert statuses(big) == {Status.SENT: 600} and statuses(small) == {Status.SENT: 5}


def test_after_a_pause_one_probe_goes_alone_before_full_speed_resumes(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 40)
    refusing_until = time.time() + 1.0
    scripted_provider.script = lambda msg_id, attempt: (
        (401, b"", 0) if time.time() < refusing_until else (200, OK, 0)
    )

    run_until_idle(scripted_provider, concurrency=10, auth_pause=0.3)

    refused = [at for msg_id, at in scripted_provider.requests if at < refusing_until]
    assert statuses(mailing) == {Status.SENT: 40}
    # The first wave, then about one probe per 0.3 s pause: not ten requests per pause.
    assert len(refused) <= 10 + 5


def test_a_mailing_that_stops_being_sendable_is_no_longer_claimed_and_its_claims_go_back(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 40)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.5)

    later(
        0.3,
        lambda: Mailing.objects.filter(pk=mailing.pk).update(launched_at=None),
        once=lambda: scripted_provider.requests,
    )
    sender(scripted_provider, concurrency=5).run(seconds=3)

    found = statuses(mailing)
    assert set(found) == {Status.SENT, Status.PENDING}
    assert found[Status.SENT] == len(scripted_provider.accepted) <= 15
    assert not Message.objects.filter(mailing=mailing, status=Status.PENDING, attempts__gt=0).exists()


def test_stop_lets_requests_in_flight_finish_and_gives_the_rest_back_at_once(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 30)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 0.6)
    stopping = sender(scripted_provider, concurrency=5)

    later(0.3, stopping.request_stop, once=lambda: scripted_provider.requests)
    report = stopping.run()

    found = statuses(mailing)
    assert (
        found[Status.SENT]
        == report[Outcome.SENT]
        == len(scripted_provider.accepted)
        == len(scripted_provider.requests)
    )
    assert set(found) == {Status.SENT, Status.PENDING}
    assert not Message.objects.filter(mailing=mailing, lease_until__isnull=False).exists()
    assert not Message.objects.filter(mailing=mailing, attempts__gt=0, status=Status.PENDING).exists()


def test_stop_cuts_what_outlives_its_grace_as_unknown(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 3)
    scripted_provider.script = lambda msg_id, attempt: (200, OK, 4.0)
    stopping = sender(scripted_provider, stop_grace=0.5)

    later(0, stopping.request_stop, once=lambda: len(scripted_provider.requests) == 3)
    stopping.run()

    assert statuses(mailing) == {Status.UNKNOWN: 3}
    assert not SenderSlot.objects.filter(mailing=mailing).exclude(holder="").exists()


def test_429_gives_the_message_back_untouched_and_never_trips_the_breaker(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 20)
    scripted_provider.script = lambda msg_id, attempt: (
        (429, b"slow down", 0) if attempt <= 2 else (200, OK, 0)
    )

    report = run_until_idle(scripted_provider, concurrency=5, breaker_threshold=3)

    assert statuses(mailing) == {Status.SENT: 20}
    assert report[Outcome.THROTTLED] == 40
    assert report[Outcome.RETRY] == report[Outcome.FAILED] == 0
    assert services.provider_paused_until(now=timezone.now()) is None
    # Two 429s each, and the attempt of each given back: one attempt counted, the accepted one.
    assert len(scripted_provider.requests) == 60
    assert set(Message.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}


def test_the_pace_learns_the_providers_rate_from_its_429s(scripted_provider):
    mailing = running_mailing()
    messages_of(mailing, 150)
    allowed = {"tokens": 5.0, "at": time.monotonic()}

    def fifty_per_second(msg_id, attempt):
        now = time.monotonic()
        allowed["tokens"] = min(5.0, allowed["tokens"] + (now - allowed["at"]) * 50)
        allowed["at"] = now
        if allowed["tokens"] < 1:
            return 429, b"", 0
        allowed["tokens"] -= 1
        return 200, OK, 0.01

    scripted_provider.script = fifty_per_second
    pacer = Pacer(limit=InFlightLimit(initial=20, minimum=2, maximum=50))

    report = run_until_idle(scripted_provider, pacer=pacer, concurrency=50, breaker_threshold=5)

    assert statuses(mailing) == {Status.SENT: 150}
    assert services.provider_paused_until(now=timezone.now()) is None
    assert pacer.learned.rate is not None and pacer.learned.rate < 70
    # The first round trips meet 429s; once the rate is learned they are rare.
    assert report[Outcome.THROTTLED] < 150
