"""Claims and their tokens: every result write is fenced by the claim it belongs to.

Two senders are two threads, hence two real database connections (transactional_db).
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.utils import timezone

from conftest import concurrent_writers
from mailings.tests.factories import MailingFactory
from messages_app import services
from messages_app.models import Message
from messages_app.sending.outcomes import Outcome, Result
from messages_app.tests.factories import MessageFactory
from providers.models import SETTINGS_PROVIDER

pytestmark = pytest.mark.django_db(transaction=True)
Status = Message.Status


def in_other_connection(function, **kwargs):
    """Runs `function` in a thread of its own: Django gives it a database connection of its own."""
    box = {}

    def run():
        try:
            box["value"] = function(**kwargs)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return box["value"]


def test_a_late_result_from_a_sender_that_lost_its_claim_changes_nothing():
    message = MessageFactory()
    now = timezone.now()
    first = in_other_connection(services.messages_claim, mailing_id=message.mailing_id, limit=5, now=now)
    later = now + timedelta(seconds=60)  # the first sender went silent; its lease ran out
    services.messages_release_expired_leases(now=later)
    second = in_other_connection(
        services.messages_claim, mailing_id=message.mailing_id, limit=5, now=later, holder="second"
    )
    assert [row.id for row in first.rows] == [row.id for row in second.rows] == [message.id]

    for outcome in (Outcome.RETRY, Outcome.FAILED, Outcome.DEFERRED, Outcome.EXPIRED, Outcome.SENT):
        changed = in_other_connection(
            services.messages_record,
            results=[Result(message.id, first.token, outcome, 1, "late")],
            now=later,
        )
        assert changed == 0
    message.refresh_from_db()
    assert (message.status, message.claim_token, message.claimed_by) == (
        Status.SENDING,
        second.token,
        "second",
    )

    services.messages_record(results=[Result(message.id, second.token, Outcome.FAILED, 2, "no")], now=later)
    message.refresh_from_db()
    assert (message.status, message.last_error, message.lease_until) == (Status.FAILED, "no", None)


def test_an_acceptance_that_arrives_after_its_lease_was_released_still_counts_if_nobody_reclaimed():
    message = MessageFactory()
    now = timezone.now()
    claim = services.messages_claim(mailing_id=message.mailing_id, limit=1, now=now)
    services.messages_release_expired_leases(now=now + timedelta(seconds=60))

    services.messages_record(results=[Result(message.id, claim.token, Outcome.SENT, 1)], now=now)

    message.refresh_from_db()
    assert message.status == Status.SENT  # not sent twice


@concurrent_writers
def test_two_concurrent_claims_take_disjoint_rows():
    mailing = MailingFactory()
    for _ in range(20):
        MessageFactory(mailing=mailing)
    now = timezone.now()
    claims = []

    threads = [
        threading.Thread(
            target=lambda: claims.append(
                in_other_connection(services.messages_claim, mailing_id=mailing.pk, limit=15, now=now)
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    ids = [row.id for claim in claims for row in claim.rows]
    assert len(ids) == len(set(ids)) == 20
    assert claims[0].token != claims[1].token


def test_the_claim_takes_an_extra_condition():
    mailing = MailingFactory()
    kept, skipped = MessageFactory(mailing=mailing), MessageFactory(mailing=mailing)

    claim = services.messages_claim(
        mailing_id=mailing.pk, limit=10, now=timezone.now(), where=~Q(client_id=skipped.client_id)
    )

    assert [row.id for row in claim.rows] == [kept.id]


def test_renewal_pushes_on_only_the_given_claims_leases(settings):
    settings.SENDER_LEASE_SECONDS = 5
    mailing = MailingFactory()
    mine, theirs = MessageFactory(mailing=mailing), MessageFactory(mailing=mailing)
    now = timezone.now()
    my_claim = services.messages_claim(mailing_id=mailing.pk, limit=1, now=now)
    services.messages_claim(mailing_id=mailing.pk, limit=1, now=now)

    services.messages_renew_leases(tokens=[my_claim.token], now=now + timedelta(seconds=4))

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.lease_until == now + timedelta(seconds=9)
    assert theirs.lease_until == now + timedelta(seconds=5)


def test_the_shared_pause_keeps_the_later_of_two_ends():
    now = timezone.now()
    services.provider_pause(until=now + timedelta(seconds=60))

    kept = services.provider_pause(until=now + timedelta(seconds=30))

    assert kept == now + timedelta(seconds=60)
    assert services.provider_pauses(now=now).get(SETTINGS_PROVIDER) == now + timedelta(seconds=60)
    assert services.provider_pause(until=now + timedelta(seconds=90)) == now + timedelta(seconds=90)
    assert services.provider_pauses(now=now + timedelta(seconds=91)).get(SETTINGS_PROVIDER) is None


def test_slots_bound_the_senders_of_a_mailing_and_a_dead_ones_slot_frees_after_its_lease(settings):
    settings.SENDERS_PER_MAILING = 2
    settings.SENDER_LEASE_SECONDS = 5
    mailing = MailingFactory()
    now = timezone.now()

    held = {
        name: services.sender_slots_hold(holder=name, mailing_ids=[mailing.pk], now=now) for name in "abc"
    }

    assert held == {"a": {mailing.pk}, "b": {mailing.pk}, "c": set()}
    # "a" dies; its slot is free once its lease has run out, and only then.
    assert (
        services.sender_slots_hold(holder="c", mailing_ids=[mailing.pk], now=now + timedelta(seconds=4))
        == set()
    )
    services.sender_slots_hold(holder="b", mailing_ids=[mailing.pk], now=now + timedelta(seconds=4))
    later = now + timedelta(seconds=6)
    assert services.sender_slots_hold(holder="c", mailing_ids=[mailing.pk], now=later) == {mailing.pk}
    services.sender_slots_release(holder="b")
    assert services.sender_slots_hold(holder="a", mailing_ids=[mailing.pk], now=later) == {mailing.pk}


def test_an_acceptance_is_stamped_with_its_answer_not_with_the_later_write():
    mailing = MailingFactory()
    messages = [MessageFactory(mailing=mailing), MessageFactory(mailing=mailing)]
    now = timezone.now()
    claim = services.messages_claim(mailing_id=mailing.pk, limit=2, now=now)
    answered = [now + timedelta(seconds=1), now + timedelta(seconds=2)]

    services.messages_record(
        results=[
            Result(message.id, claim.token, Outcome.SENT, 1, answered_at=at)
            for message, at in zip(messages, answered, strict=True)
        ],
        now=now + timedelta(seconds=5),  # written after the mailing's end, say
    )

    # The group's latest answer: no message of it was answered later, none is stamped with the write.
    assert set(Message.objects.filter(mailing=mailing).values_list("sent_at", flat=True)) == {answered[1]}
