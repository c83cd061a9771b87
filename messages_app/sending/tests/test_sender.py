"""The sender on a fake clock, with the database as the truth.

The provider is a scripted transport on the same fake clock: a request takes the script's latency
and ends as the script says, so a four-second answer or a thirty-second pause costs no real time.
What the provider's HTTP answers mean is `test_probe_transport.py`'s; one test here goes over real
HTTP. These tests commit (transactional_db): the sender works in a database thread (and
connection) of its own, so two senders in one test are two real database sessions.
"""

import threading
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
from messages_app.senders import sender_holder
from messages_app.sending.adaptive import InFlightLimit
from messages_app.sending.clock import Clock
from messages_app.sending.django_store import DjangoMessageStore
from messages_app.sending.gate import ProviderGate
from messages_app.sending.outcomes import Outcome
from messages_app.sending.pacing import Pacer
from messages_app.sending.sender import IDLE_TICK, Sender
from messages_app.sending.store import StoreUnavailable
from messages_app.sending.transports.base import (
    TransportAuthError,
    TransportError,
    TransportThrottled,
)
from messages_app.sending.transports.probe import ProbeTransport
from messages_app.tests.factories import MessageFactory
from providers.models import SETTINGS_PROVIDER

from .fakes import Script, ScriptedTransport, accept_at_once, providers_of, soon, spec

pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status


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
    transport,
    clock: Clock,
    *,
    breaker_threshold=1000,
    breaker_pause=30.0,
    auth_pause=30.0,
    pacer=None,
    **overrides,
) -> Sender:
    options = {
        "concurrency": 10,
        "end_margin": 0.05,
        "stop_grace": 5.0,
        "request_timeout": 6.0,
        "max_attempts": 100,
    }
    gate = ProviderGate(
        breaker_threshold=breaker_threshold,
        breaker_pause=breaker_pause,
        auth_pause=auth_pause,
        clock=clock.wall,
        pacer=pacer,
    )
    store = DjangoMessageStore(holder=sender_holder(), clock=clock)
    providers = providers_of(clock, [(spec(), transport, gate)])
    return Sender(providers=providers, store=store, clock=clock, **options | overrides)


def run_until_idle(transport, clock, *, seconds: float = 60, **overrides):
    return sender(transport, clock, **overrides).run(until_idle=True, seconds=seconds)


def statuses(mailing: Mailing) -> dict[str, int]:
    return dict(Counter(Message.objects.filter(mailing=mailing).values_list("status", flat=True)))


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


def test_every_message_is_sent_once_and_marked_sent(transport, clock):
    mailing = running_mailing()
    messages = messages_of(mailing, 25)

    report = run_until_idle(transport, clock)

    assert report[Outcome.SENT] == 25
    assert sorted(msg_id for msg_id, _ in transport.accepted) == sorted(m.id for m in messages)
    for message in Message.objects.filter(mailing=mailing):
        assert (message.status, message.attempts, message.lease_until) == (Status.SENT, 1, None)
        assert message.sent_at is not None and message.claim_token is not None


def test_every_message_goes_over_real_http_once(scripted_provider):
    mailing = running_mailing()
    messages = messages_of(mailing, 25)
    clock = Clock()
    http = ProbeTransport(base_url=scripted_provider.url, token="t", connect_timeout=1.0, max_connections=50)

    report = sender(http, clock).run(until_idle=True, seconds=30)

    assert report[Outcome.SENT] == 25
    assert sorted(msg_id for msg_id, _ in scripted_provider.accepted) == sorted(m.id for m in messages)
    assert statuses(mailing) == {Status.SENT: 25}


def test_rejections_fail_and_overload_is_retried_later_with_backoff(transport, clock):
    mailing = running_mailing()
    rejected, overloaded, fine = messages_of(mailing, 3)
    answers = {
        rejected.id: TransportError("code 7: blocked", permanent=True),
        overloaded.id: TransportError("HTTP 503"),
    }
    transport.script = lambda msg_id, attempt: (answers.get(msg_id), 0.01)

    before = timezone.now()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(transport, clock).run(seconds=1.5)

    for message in (rejected, overloaded, fine):
        message.refresh_from_db()
    assert (rejected.status, rejected.last_error, fine.status) == (
        Status.FAILED,
        "code 7: blocked",
        Status.SENT,
    )
    assert (overloaded.status, overloaded.attempts, overloaded.last_error) == (Status.PENDING, 1, "HTTP 503")
    assert overloaded.next_attempt_at >= before + timedelta(minutes=4)


def test_retried_message_is_delivered_when_the_provider_recovers(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    transport.script = lambda msg_id, attempt: (TransportError("HTTP 503") if attempt <= 2 else None, 0.01)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(milliseconds=50))
        report = run_until_idle(transport, clock)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.SENT, 3)
    assert report[Outcome.RETRY] == 2
    assert [msg_id for msg_id, _ in transport.accepted] == [message.id]


def test_an_unexpected_error_sends_the_message_back_to_pending_and_the_sender_goes_on(
    transport, clock, caplog
):
    mailing = running_mailing()
    unlucky, fine = messages_of(mailing, 2)
    transport.script = lambda msg_id, attempt: (
        RuntimeError("surprise") if msg_id == unlucky.id else None,
        0.01,
    )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        report = sender(transport, clock).run(seconds=1.5)

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


def test_consecutive_failures_open_the_breaker_for_every_sender(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 30)
    transport.script = lambda msg_id, attempt: (TransportError("HTTP 500"), 0.01)

    sender(transport, clock, concurrency=1, breaker_threshold=5).run(seconds=2.5)

    assert len(transport.requests) == 5  # then the breaker held the rest back
    assert services.provider_pauses(now=clock.now()).get(SETTINGS_PROVIDER) > clock.now() + timedelta(
        seconds=20
    )
    assert statuses(mailing) == {Status.PENDING: 30}
    assert Message.objects.filter(mailing=mailing, attempts=0).count() >= 25


def test_refused_token_pauses_sending_and_marks_nothing_failed(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 12)
    transport.script = lambda msg_id, attempt: (TransportAuthError("HTTP 401"), 0.01)

    report = sender(transport, clock, concurrency=4, auth_pause=60.0).run(seconds=2.5)

    assert statuses(mailing) == {Status.PENDING: 12}
    assert report[Outcome.FAILED] == 0
    assert len(transport.requests) <= 4  # at most the requests already in flight
    paused_until = services.provider_pauses(now=clock.now()).get(SETTINGS_PROVIDER)
    assert paused_until is not None and paused_until > clock.now() + timedelta(seconds=50)
    assert not Message.objects.filter(mailing=mailing, attempts__gt=0).exists()


def test_nothing_is_accepted_after_the_end_and_what_was_cut_in_flight_is_unknown_not_expired(
    transport, clock
):
    mailing = running_mailing(ends_in=3)
    messages_of(mailing, 60)  # 5 in flight at 0.4 s: far more than fit before the end
    transport.script = lambda msg_id, attempt: (None, 0.4)

    run_until_idle(transport, clock, concurrency=5)

    end = mailing.end_at.timestamp()
    assert transport.accepted, "some messages fit before the end"
    assert all(at <= end for _, at in transport.accepted)
    found = statuses(mailing)
    assert set(found) <= {Status.SENT, Status.EXPIRED, Status.UNKNOWN}
    assert found[Status.SENT] == len(transport.accepted)
    # Requests that reached the provider are sent or unknown, never expired.
    assert found.get(Status.SENT, 0) + found.get(Status.UNKNOWN, 0) == len(transport.requests)


def test_moving_the_end_earlier_cuts_requests_already_in_flight(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 3)
    transport.script = lambda msg_id, attempt: (None, 4.0)
    errors_before = provider_errors()

    def end_soon():
        Mailing.objects.filter(pk=mailing.pk).update(end_at=clock.now() + timedelta(seconds=0.5))

    transport.on_request = lambda count: count == 3 and soon(0, end_soon)
    run_until_idle(transport, clock)

    assert transport.accepted == []  # cut before the provider's answer
    assert statuses(mailing) == {Status.UNKNOWN: 3}
    assert provider_errors() - errors_before == Counter(cut=3)


def test_moving_the_end_later_extends_requests_already_in_flight(transport, clock):
    mailing = running_mailing(ends_in=2.5)
    messages_of(mailing, 3)
    transport.script = lambda msg_id, attempt: (None, 3.5)  # a request may take 6 s (request_timeout)

    def end_later():
        Mailing.objects.filter(pk=mailing.pk).update(end_at=clock.now() + timedelta(seconds=60))

    transport.on_request = lambda count: count == 1 and soon(0, end_later)
    run_until_idle(transport, clock)

    assert len(transport.accepted) == 3
    assert statuses(mailing) == {Status.SENT: 3}


def test_a_request_without_an_answer_in_time_is_retried_later_not_cut(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    transport.script = lambda msg_id, attempt: (None, 3.0)
    errors_before = provider_errors()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(transport, clock, request_timeout=0.3).run(seconds=1.5)

    ((_, ran_for),) = transport.ended
    assert ran_for == pytest.approx(0.3, abs=0.05)  # given up at its own limit, not at the answer
    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error, message.unanswered) == (
        Status.PENDING,
        1,
        "no answer within 0.3 s",
        True,  # it may have been accepted: it never ends expired or plainly failed
    )
    assert provider_errors() - errors_before == Counter(timeout=1)


def test_a_message_that_keeps_failing_gives_up_as_failed_after_max_attempts(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    transport.script = lambda msg_id, attempt: (TransportError("HTTP 503"), 0.01)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(milliseconds=50))
        report = run_until_idle(transport, clock, max_attempts=3)

    message.refresh_from_db()
    assert (message.status, message.attempts, message.last_error) == (
        Status.FAILED,
        3,
        "gave up after 3 attempts: HTTP 503",
    )
    assert transport.attempts_of(message.id) == 3
    assert (report[Outcome.RETRY], report[Outcome.FAILED]) == (2, 1)


def test_giving_up_after_an_unanswered_attempt_ends_unknown_not_failed(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    # The first attempt outlives its timeout (it may have been accepted), the next ones fail.
    transport.script = lambda msg_id, attempt: (
        (None, 3.0) if attempt == 1 else (TransportError("HTTP 503"), 0.01)
    )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(milliseconds=50))
        report = run_until_idle(transport, clock, max_attempts=3, request_timeout=0.3)

    message.refresh_from_db()
    assert (message.status, message.attempts) == (Status.UNKNOWN, 3)
    assert message.last_error == "gave up after 3 attempts, one never answered: HTTP 503"
    assert (report[Outcome.UNANSWERED], report[Outcome.RETRY], report[Outcome.UNKNOWN]) == (1, 1, 1)


def test_an_unanswered_message_the_end_leaves_unconfirmed_is_unknown_not_expired(transport, clock):
    mailing = running_mailing(ends_in=2.0)
    maybe_sent, never_tried = messages_of(mailing, 2)
    Message.objects.filter(pk=never_tried.pk).update(next_attempt_at=timezone.now() + timedelta(hours=1))
    transport.script = lambda msg_id, attempt: (None, 3.0)  # no answer within the 0.3 s timeout

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(transport, clock, request_timeout=0.3).run(seconds=4.0)

    assert {m.pk: m.status for m in Message.objects.filter(mailing=mailing)} == {
        maybe_sent.pk: Status.UNKNOWN,
        never_tried.pk: Status.EXPIRED,
    }


def test_a_message_goes_to_the_phone_copied_at_fan_out_whatever_becomes_of_the_client(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    recipient = message.phone
    message.client.phone = "79990000001"  # renumbered after the fan-out
    message.client.save()

    run_until_idle(transport, clock)

    message.refresh_from_db()
    assert transport.phones == {message.id: recipient}
    assert (message.status, message.phone) == (Status.SENT, recipient)


def test_moving_the_end_later_extends_a_request_only_up_to_its_own_limit(transport, clock):
    mailing = running_mailing(ends_in=3.0)  # moved before it comes: the sender re-reads ends every second
    (message,) = messages_of(mailing, 1)
    transport.script = lambda msg_id, attempt: (None, 5.0)

    def end_later():
        Mailing.objects.filter(pk=mailing.pk).update(end_at=clock.now() + timedelta(seconds=60))

    transport.on_request = lambda count: count == 1 and soon(0, end_later)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "retry_delay", lambda attempt: timedelta(minutes=5))
        sender(transport, clock, request_timeout=3.0).run(seconds=4.0)

    message.refresh_from_db()
    assert (message.status, message.last_error) == (Status.PENDING, "no answer within 3 s")
    ((_, ran_for),) = transport.ended
    assert ran_for == pytest.approx(3.0, abs=0.05)


def test_message_of_a_deleted_client_fails_without_a_request(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    message.client.delete()

    run_until_idle(transport, clock)

    message.refresh_from_db()
    assert (message.status, message.client_id) == (Status.FAILED, None)
    assert transport.requests == []


def run_side_by_side(count: int, script: Script, **overrides) -> tuple[list, list[ScriptedTransport]]:
    """`count` senders at once, each in its own thread, loop and database session. On the real clock:
    the leases they share in the database need one time for all of them."""
    reports, transports = [], []
    for _ in range(count):
        transports.append(ScriptedTransport(Clock(), script))
    threads = [
        threading.Thread(
            target=lambda t=transport: reports.append(run_until_idle(t, t.clock, **overrides)),
        )
        for transport in transports
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports, transports


@concurrent_writers
def test_two_senders_share_a_mailing_without_sending_anything_twice():
    mailing = running_mailing()
    messages_of(mailing, 60)

    reports, transports = run_side_by_side(2, accept_at_once, concurrency=5)

    accepted_ids = [msg_id for transport in transports for msg_id, _ in transport.accepted]
    assert len(accepted_ids) == len(set(accepted_ids)) == 60
    assert sum(report[Outcome.SENT] for report in reports) == 60
    assert statuses(mailing) == {Status.SENT: 60}


@concurrent_writers
def test_no_more_senders_on_a_mailing_than_its_slots(settings):
    settings.SENDERS_PER_MAILING = 2
    mailing = running_mailing()
    messages_of(mailing, 60)

    reports, _ = run_side_by_side(3, lambda msg_id, attempt: (None, 0.2), concurrency=4)

    senders = set(Message.objects.filter(mailing=mailing).values_list("claimed_by", flat=True))
    assert 1 <= len(senders) <= 2
    assert sorted(report[Outcome.SENT] for report in reports)[0] == 0  # the third never claimed
    assert statuses(mailing) == {Status.SENT: 60}


@concurrent_writers  # the small mailing's messages are written while the sender writes
def test_a_new_small_mailing_is_served_beside_a_big_one(transport, clock):
    big = running_mailing()
    messages_of(big, 600)
    small = running_mailing()
    transport.script = lambda msg_id, attempt: (None, 0.5)  # 20 a second: the big one takes 30 s

    transport.on_request = lambda count: count == 100 and soon(0, lambda: messages_of(small, 5))
    run_until_idle(transport, clock, concurrency=10)

    small_ids = set(Message.objects.filter(mailing=small).values_list("id", flat=True))
    order = [msg_id for msg_id, _ in transport.accepted]
    last_small = max(order.index(msg_id) for msg_id in small_ids)
    # The small one does not wait for the big one's queue: it appears after about 100 of the big
    # one's sends and is picked up within a refresh or two (a second each: 20 sends here).
    assert last_small < 200
    assert statuses(big) == {Status.SENT: 600} and statuses(small) == {Status.SENT: 5}


def test_after_a_pause_one_trial_request_goes_alone_before_full_speed_resumes(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 40)
    refusing_until = clock.wall() + 1.0

    def refuse_for_a_second(msg_id, attempt):
        return (TransportAuthError("HTTP 401") if clock.wall() < refusing_until else None), 0.01

    transport.script = refuse_for_a_second
    run_until_idle(transport, clock, concurrency=10, auth_pause=0.3)

    refused = [at for msg_id, at in transport.requests if at < refusing_until]
    assert statuses(mailing) == {Status.SENT: 40}
    # The first wave, then one trial request per 0.3 s pause: not ten requests per pause.
    assert len(refused) <= 10 + 4


def test_a_mailing_that_stops_being_sendable_is_no_longer_claimed_and_its_claims_go_back(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 40)
    transport.script = lambda msg_id, attempt: (None, 0.5)

    def unlaunch():
        Mailing.objects.filter(pk=mailing.pk).update(launched_at=None)

    transport.on_request = lambda count: count == 1 and soon(0.3, unlaunch)
    sender(transport, clock, concurrency=5).run(seconds=3)

    found = statuses(mailing)
    assert set(found) == {Status.SENT, Status.PENDING}
    assert found[Status.SENT] == len(transport.accepted) <= 15
    assert not Message.objects.filter(mailing=mailing, status=Status.PENDING, attempts__gt=0).exists()


def test_stop_lets_requests_in_flight_finish_and_gives_the_rest_back_at_once(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 30)
    transport.script = lambda msg_id, attempt: (None, 0.6)
    stopping = sender(transport, clock, concurrency=5)

    transport.on_request = lambda count: count == 1 and soon(0.3, stopping.request_stop)
    report = stopping.run()

    found = statuses(mailing)
    assert found[Status.SENT] == report[Outcome.SENT] == len(transport.accepted) == len(transport.requests)
    assert set(found) == {Status.SENT, Status.PENDING}
    assert not Message.objects.filter(mailing=mailing, lease_until__isnull=False).exists()
    assert not Message.objects.filter(mailing=mailing, attempts__gt=0, status=Status.PENDING).exists()


def test_stop_cuts_what_outlives_its_grace_as_unknown(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 3)
    transport.script = lambda msg_id, attempt: (None, 4.0)
    stopping = sender(transport, clock, stop_grace=0.5)

    transport.on_request = lambda count: count == 3 and soon(0, stopping.request_stop)
    stopping.run()

    assert statuses(mailing) == {Status.UNKNOWN: 3}
    # Cut at the grace's end, which starts when the feeder next looks (a tick at most) after the stop.
    assert all(0.5 <= ran_for <= 0.5 + IDLE_TICK + 0.01 for _, ran_for in transport.ended)
    assert not SenderSlot.objects.filter(mailing=mailing).exclude(holder="").exists()


def test_429_gives_the_message_back_untouched_and_never_trips_the_breaker(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 20)
    transport.script = lambda msg_id, attempt: (
        TransportThrottled("HTTP 429") if attempt <= 2 else None,
        0.01,
    )

    report = run_until_idle(transport, clock, concurrency=5, breaker_threshold=3)

    assert statuses(mailing) == {Status.SENT: 20}
    assert report[Outcome.THROTTLED] == 40
    assert report[Outcome.RETRY] == report[Outcome.FAILED] == 0
    assert services.provider_pauses(now=clock.now()).get(SETTINGS_PROVIDER) is None
    # Two 429s each, and the attempt of each given back: one attempt counted, the accepted one.
    assert len(transport.requests) == 60
    assert set(Message.objects.filter(mailing=mailing).values_list("attempts", flat=True)) == {1}


def test_the_pace_learns_the_providers_rate_from_its_429s(transport, clock):
    mailing = running_mailing()
    messages_of(mailing, 150)
    allowed = {"tokens": 5.0, "at": clock.monotonic()}

    def fifty_per_second(msg_id, attempt):
        now = clock.monotonic()
        allowed["tokens"] = min(5.0, allowed["tokens"] + (now - allowed["at"]) * 50)
        allowed["at"] = now
        if allowed["tokens"] < 1:
            return TransportThrottled("HTTP 429"), 0.01
        allowed["tokens"] -= 1
        return None, 0.01

    transport.script = fifty_per_second
    pacer = Pacer(limit=InFlightLimit(initial=20, minimum=2, maximum=50, clock=clock), clock=clock)

    report = run_until_idle(transport, clock, pacer=pacer, concurrency=50, breaker_threshold=5)

    assert statuses(mailing) == {Status.SENT: 150}
    assert services.provider_pauses(now=clock.now()).get(SETTINGS_PROVIDER) is None
    assert pacer.learned.rate is not None and pacer.learned.rate < 70
    # The earliest round trips meet 429s; once the rate is learned they are rare.
    assert report[Outcome.THROTTLED] < 150


def failing_first(monkeypatch, method: str, times: int) -> list[list]:
    """DjangoMessageStore.`method` raises StoreUnavailable its first `times` calls (the database away),
    then works; returns the keyword arguments of every call, in order."""
    calls: list = []
    original = getattr(DjangoMessageStore, method)

    async def flaky(store, **kwargs):
        calls.append(kwargs)
        if len(calls) <= times:
            raise StoreUnavailable("the database is restarting")
        return await original(store, **kwargs)

    monkeypatch.setattr(DjangoMessageStore, method, flaky)
    return calls


@pytest.mark.parametrize("method", ["look", "claim", "release_expired_leases"])
def test_the_sender_goes_on_once_the_database_is_back(transport, clock, monkeypatch, method, caplog):
    mailing = running_mailing()
    messages_of(mailing, 10)
    calls = failing_first(monkeypatch, method, times=2)

    report = run_until_idle(transport, clock)

    assert len(calls) > 2
    assert report[Outcome.SENT] == 10
    assert statuses(mailing) == {Status.SENT: 10}
    assert caplog.text.count("database error, trying again") == 2


def test_results_the_database_refused_are_kept_in_order_and_written_once_it_is_back(
    transport, clock, monkeypatch
):
    mailing = running_mailing()
    messages_of(mailing, 10)
    calls = failing_first(monkeypatch, "record", times=1)

    report = run_until_idle(transport, clock)

    assert report[Outcome.SENT] == 10
    assert statuses(mailing) == {Status.SENT: 10}
    refused, retried = calls[0]["results"], calls[1]["results"]
    assert retried[: len(refused)] == refused  # the refused batch first, as it was


def test_a_deleted_clients_message_with_an_unanswered_attempt_ends_unknown_not_failed(transport, clock):
    mailing = running_mailing()
    (message,) = messages_of(mailing, 1)
    recipient = message.phone
    Message.objects.filter(pk=message.pk).update(attempts=1, unanswered=True)
    message.client.delete()

    run_until_idle(transport, clock)

    message.refresh_from_db()
    assert (message.status, message.phone) == (Status.UNKNOWN, recipient)
    assert message.last_error == "client was deleted; an earlier attempt never answered"
    assert transport.requests == []
