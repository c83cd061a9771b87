"""The message tallies, kept by database triggers, agree with the messages whatever changed them."""

import threading
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Sum
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory
from conftest import concurrent_writers
from mailings.tests.factories import MailingFactory
from messages_app import services, tasks
from messages_app.models import Message, MessageTally
from messages_app.sending.outcomes import Outcome, Result

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


def rows_of(*mailing_ids: int) -> list[tuple]:
    """The tally rows of these mailings (not of other tests' mailings), in a stable order."""
    rows = MessageTally.objects.filter(mailing_id__in=mailing_ids)
    return sorted(rows.values_list("mailing_id", "status", "messages"))


def audience(count: int):
    return Client.objects.filter(pk__in=[client.pk for client in ClientFactory.create_batch(count)])


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite's triggers are per row")
def test_on_postgresql_a_statement_appends_one_row_per_mailing_and_status_it_changed():
    mailing = MailingFactory()
    now = timezone.now()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=audience(50), now=now)
    assert rows_of(mailing.pk) == [(mailing.pk, Status.PENDING, 50)]

    services.messages_claim(mailing_id=mailing.pk, limit=30, now=now)
    assert Counter(rows_of(mailing.pk)) == Counter(
        {
            (mailing.pk, Status.PENDING, 50): 1,
            (mailing.pk, Status.PENDING, -30): 1,
            (mailing.pk, Status.SENDING, 30): 1,
        }
    )

    Message.objects.filter(mailing=mailing).update(last_error="no status changed")
    assert len(rows_of(mailing.pk)) == 3


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no TRUNCATE")
@pytest.mark.django_db(transaction=True)  # TRUNCATE refuses a table with checks still pending
def test_on_postgresql_truncating_the_messages_empties_the_tallies():
    mailing = MailingFactory()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=audience(3), now=timezone.now())

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {Message._meta.db_table}")

    assert not MessageTally.objects.exists()


def test_the_triggers_are_there():
    """SQLite drops a table's triggers when a migration rebuilds it: one altering Message must make
    them again, or every count would silently stop moving."""
    if connection.vendor == "postgresql":
        query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'messages_app_message'::regclass"
    else:
        query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'messages_app_message'"
    with connection.cursor() as cursor:
        cursor.execute(query)
        names = {name for (name,) in cursor.fetchall() if name.startswith("messages_app_message_tally_")}
    events = {"insert", "update", "delete"} | ({"truncate"} if connection.vendor == "postgresql" else set())
    assert names == {f"messages_app_message_tally_{event}" for event in events}


def test_folding_keeps_the_sums_in_one_row_per_mailing_and_status_and_drops_deleted_mailings():
    kept, deleted, untouched = MailingFactory(), MailingFactory(), MailingFactory()
    clients = audience(5)
    now = timezone.now()
    for mailing in (kept, deleted, untouched):
        services.messages_create_for_clients(mailing_id=mailing.pk, clients=clients, now=now)
    services.message_tallies_fold()  # one row each (SQLite's triggers wrote one per message)
    claim = services.messages_claim(mailing_id=kept.pk, limit=3, now=now)
    services.messages_record(results=[Result(claim.rows[0].id, claim.token, Outcome.SENT, 1)], now=now)
    deleted_id = deleted.pk
    deleted.delete()
    before = rows_of(kept.pk, deleted_id, untouched.pk)
    untouched_row = MessageTally.objects.get(mailing_id=untouched.pk)

    assert services.message_tallies_fold() == len(before) - 4

    assert rows_of(kept.pk, untouched.pk) == [
        (kept.pk, Status.PENDING, 2),
        (kept.pk, Status.SENDING, 2),
        (kept.pk, Status.SENT, 1),
        (untouched.pk, Status.PENDING, 5),
    ]
    assert tallied(kept.pk) == counted(kept.pk)
    assert not MessageTally.objects.filter(mailing_id=deleted_id).exists()
    # A (mailing, status) already in one row is not rewritten.
    assert MessageTally.objects.get(mailing_id=untouched.pk).pk == untouched_row.pk


def test_the_sweep_folds_the_tallies():
    mailing = MailingFactory()
    now = timezone.now()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=audience(3), now=now)
    services.messages_claim(mailing_id=mailing.pk, limit=2, now=now)

    tasks.sweep_messages()

    assert rows_of(mailing.pk) == [(mailing.pk, Status.PENDING, 1), (mailing.pk, Status.SENDING, 2)]


def test_reconciling_repairs_tallies_that_missed_or_doubled_messages(capsys):
    missed, doubled, right = MailingFactory(), MailingFactory(), MailingFactory()
    now = timezone.now()
    for mailing in (missed, doubled, right):
        services.messages_create_for_clients(mailing_id=mailing.pk, clients=audience(4), now=now)
    # As after loading messages with the triggers off, and after loading both tables.
    MessageTally.objects.filter(mailing_id=missed.pk).delete()
    MessageTally.objects.create(mailing_id=doubled.pk, status=Status.PENDING, messages=4)

    call_command("reconcile_message_tallies")

    assert "2 (mailing, status) counts corrected" in capsys.readouterr().out
    for mailing in (missed, doubled, right):
        assert tallied(mailing.pk) == counted(mailing.pk) == {Status.PENDING: 4}
    assert services.message_tallies_reconcile() == 0


@contextmanager
def migrated_back_to(migration: str):
    """The database as it was after messages_app's `migration`, with the Message model of that time
    (not today's); migrated forward again to the latest on the way out."""
    executor = MigrationExecutor(connection)
    target = [("messages_app", migration)]
    executor.migrate(target)
    try:
        yield executor.loader.project_state(target).apps.get_model("messages_app", "Message")
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_migrating_counts_the_messages_that_were_there_before_the_triggers():
    with migrated_back_to("0005_mailing_fk_without_own_index") as OldMessage:
        mailing = MailingFactory()
        for client in ClientFactory.create_batch(3):
            OldMessage.objects.create(mailing_id=mailing.pk, client_id=client.pk, status=Status.SENT)
        OldMessage.objects.create(mailing_id=mailing.pk, client_id=ClientFactory().pk)

    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.SENT: 3, Status.PENDING: 1}


@concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_two_reconciles_at_once_add_the_missing_messages_once():
    mailing = MailingFactory()
    services.messages_create_for_clients(mailing_id=mailing.pk, clients=audience(4), now=timezone.now())
    MessageTally.objects.filter(mailing_id=mailing.pk).delete()  # as if written with the triggers off
    first_added = threading.Event()

    def first():
        try:
            with transaction.atomic():
                services.message_tallies_reconcile()
                first_added.set()
                time.sleep(0.5)  # the second one starts meanwhile: it must not count the gap again
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    first_added.wait(10)
    services.message_tallies_reconcile()
    thread.join()

    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.PENDING: 4}


@pytest.mark.django_db(transaction=True)
def test_migrating_turns_the_old_waiting_text_into_data_and_keeps_the_tallies():
    with migrated_back_to("0007_message_tally_backfill") as OldMessage:
        mailing = MailingFactory()
        waiting = OldMessage.objects.create(
            mailing_id=mailing.pk,
            client_id=ClientFactory().pk,
            last_error="waiting for the client's local sending window",
        )
        retried = OldMessage.objects.create(
            mailing_id=mailing.pk, client_id=ClientFactory().pk, last_error="HTTP 503"
        )

    rows = Message.objects.in_bulk([waiting.pk, retried.pk])
    assert (rows[waiting.pk].waiting_for, rows[waiting.pk].last_error) == (Message.WaitingFor.WINDOW, "")
    assert (rows[retried.pk].waiting_for, rows[retried.pk].last_error) == (
        Message.WaitingFor.NOTHING,
        "HTTP 503",
    )
    Message.objects.filter(pk=retried.pk).update(status=Status.SENT)  # the triggers still count
    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.SENT: 1, Status.PENDING: 1}


@pytest.mark.django_db(transaction=True)
def test_migrating_gives_each_message_its_clients_phone_and_keeps_the_tallies():
    with migrated_back_to("0008_message_waiting_for") as OldMessage:
        mailing = MailingFactory()
        client = ClientFactory(phone="79161234567")
        kept = OldMessage.objects.create(mailing_id=mailing.pk, client_id=client.pk)
        orphan = OldMessage.objects.create(mailing_id=mailing.pk, client_id=None)

    rows = Message.objects.in_bulk([kept.pk, orphan.pk])
    assert (rows[kept.pk].phone, rows[orphan.pk].phone) == ("79161234567", "")
    assert not rows[kept.pk].unanswered
    Message.objects.filter(pk=kept.pk).update(status=Status.SENT)  # the triggers still count
    assert tallied(mailing.pk) == counted(mailing.pk) == {Status.SENT: 1, Status.PENDING: 1}
