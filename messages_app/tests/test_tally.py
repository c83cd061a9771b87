"""The message tallies, kept by database triggers, agree with the messages whatever changed them."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory
from mailings.tests.factories import MailingFactory
from messages_app import services, tasks
from messages_app.models import Message, MessageTally
from messages_app.services import Outcome, Result

pytestmark = pytest.mark.django_db
Status = Message.Status


def counted(mailing_id: int) -> dict[str, int]:
    rows = Message.objects.filter(mailing_id=mailing_id).values_list("status").annotate(n=Count("*"))
    return dict(rows.order_by())


def tallied(mailing_id: int) -> dict[str, int]:
    rows = MessageTally.objects.filter(mailing_id=mailing_id).values_list("status")
    rows = rows.annotate(n=Sum("messages"))
    return {status: number for status, number in rows.order_by() if number}


def test_the_tallies_follow_every_transition_and_a_deleted_mailing_nets_to_nothing():
    mailing = MailingFactory()
    clients = ClientFactory.create_batch(6)
    now = timezone.now()
    services.messages_create_for_clients(
        mailing_id=mailing.pk, clients=Client.objects.filter(pk__in=[c.pk for c in clients]), now=now
    )
    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.PENDING: 6}

    claim = services.messages_claim(mailing_id=mailing.pk, limit=4, now=now)
    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.PENDING: 2, Status.SENDING: 4}

    sent, failed, retried = claim.rows[:3]
    services.messages_record(
        results=[
            Result(sent.id, claim.token, Outcome.SENT, 1),
            Result(failed.id, claim.token, Outcome.FAILED, 1, "rejected"),
            Result(retried.id, claim.token, Outcome.RETRY, 1, "timeout"),
        ],
        now=now,
    )
    expected = {Status.PENDING: 3, Status.SENDING: 1, Status.SENT: 1, Status.FAILED: 1}
    assert tallied(mailing.pk) == counted(mailing.pk) == expected

    services.messages_release_expired_leases(now=now + timedelta(hours=1))
    Client.objects.filter(pk=clients[0].pk).delete()  # its message stays, with no client
    expected = {Status.PENDING: 4, Status.SENT: 1, Status.FAILED: 1}
    assert tallied(mailing.pk) == counted(mailing.pk) == expected

    services.messages_expire_pending(now=mailing.end_at + timedelta(seconds=1))
    expected = {Status.EXPIRED: 4, Status.SENT: 1, Status.FAILED: 1}
    assert tallied(mailing.pk) == counted(mailing.pk) == expected

    mailing_id = mailing.pk
    mailing.delete()
    assert tallied(mailing_id) == {}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's triggers are per row")
def test_on_postgresql_a_statement_appends_one_row_per_mailing_and_status_it_changed():
    mailing = MailingFactory()
    clients = Client.objects.filter(pk__in=[c.pk for c in ClientFactory.create_batch(50)])
    now = timezone.now()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=clients, now=now)
    assert list(MessageTally.objects.values_list("status", "messages")) == [(Status.PENDING, 50)]

    services.messages_claim(mailing_id=mailing.pk, limit=30, now=now)
    assert Counter(MessageTally.objects.values_list("status", "messages")) == Counter(
        {(Status.PENDING, 50): 1, (Status.PENDING, -30): 1, (Status.SENDING, 30): 1}
    )

    Message.objects.filter(mailing=mailing).update(last_error="no status changed")
    assert MessageTally.objects.count() == 3


def test_folding_keeps_the_sums_in_one_row_per_mailing_and_status_and_drops_deleted_mailings():
    kept, deleted = MailingFactory(), MailingFactory()
    clients = Client.objects.filter(pk__in=[c.pk for c in ClientFactory.create_batch(5)])
    now = timezone.now()
    for mailing in (kept, deleted):
        services.messages_create_for_clients(mailing_id=mailing.pk, clients=clients, now=now)
    claim = services.messages_claim(mailing_id=kept.pk, limit=3, now=now)
    services.messages_record(results=[Result(claim.rows[0].id, claim.token, Outcome.SENT, 1)], now=now)
    deleted_id = deleted.pk
    deleted.delete()
    before = MessageTally.objects.count()

    assert services.message_tallies_fold() == before - 3

    assert sorted(MessageTally.objects.values_list("mailing_id", "status", "messages")) == [
        (kept.pk, Status.PENDING, 2),
        (kept.pk, Status.SENDING, 2),
        (kept.pk, Status.SENT, 1),
    ]
    assert tallied(kept.pk) == counted(kept.pk)
    assert not MessageTally.objects.filter(mailing_id=deleted_id).exists()


def test_the_sweep_folds_the_tallies():
    mailing = MailingFactory()
    clients = Client.objects.filter(pk__in=[c.pk for c in ClientFactory.create_batch(3)])
    now = timezone.now()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=clients, now=now)
    services.messages_claim(mailing_id=mailing.pk, limit=2, now=now)

    tasks.sweep_messages()

    assert sorted(MessageTally.objects.values_list("status", "messages")) == [
        (Status.PENDING, 1),
        (Status.SENDING, 2),
    ]
