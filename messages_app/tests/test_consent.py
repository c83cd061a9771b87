"""Who may get a message: the opt-out list and the frequency cap, as the fan-out and claims hold them."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from clients.models import OptOut
from clients.services import optout_add
from clients.tests.factories import ClientFactory
from conftest import concurrent_writers
from mailings.tests.factories import MailingFactory
from messages_app import services
from messages_app.launch import mailing_launch
from messages_app.models import CAP_ERROR, Message, WaitingFor
from messages_app.selectors import message_counts_by_mailing
from messages_app.tasks import end_opted_out, sweep_messages
from messages_app.tests.factories import MessageFactory
from messages_app.tests.test_claims import in_other_connection

pytestmark = pytest.mark.django_db
Status = Message.Status


def opt_out(client) -> OptOut:
    return OptOut.objects.create(phone=client.phone, source=OptOut.Source.API)


def running_mailing(**fields):
    now = timezone.now()
    return MailingFactory(start_at=now - timedelta(minutes=1), end_at=now + timedelta(hours=1), **fields)


def test_the_fan_out_creates_no_message_for_an_opted_out_phone_and_counts_it_left_out():
    clients = ClientFactory.create_batch(5)
    opt_out(clients[1])
    opt_out(clients[3])
    mailing = running_mailing()
    assert mailing_launch(mailing_id=mailing.pk)
    mailing.refresh_from_db()
    created = set(Message.objects.filter(mailing=mailing).values_list("client_id", flat=True))
    assert created == {clients[0].pk, clients[2].pk, clients[4].pk}
    assert (mailing.audience_size, mailing.audience_opted_out) == (3, 2)


def test_a_claim_ends_the_messages_of_opted_out_phones_and_hands_out_the_others():
    mailing = running_mailing()
    kept, dropped = MessageFactory(mailing=mailing), MessageFactory(mailing=mailing)
    opt_out(dropped.client)
    claim = services.messages_claim(mailing_id=mailing.pk, limit=10, now=timezone.now())
    assert [row.id for row in claim.rows] == [kept.id]
    dropped.refresh_from_db()
    assert (dropped.status, dropped.attempts) == (Status.OPTED_OUT, 0)
    assert message_counts_by_mailing([mailing.pk])[mailing.pk]["opted_out"] == 1


def test_an_opt_out_ends_the_phones_pending_messages_in_every_mailing_and_no_other(
    django_capture_on_commit_callbacks, operator
):
    client, other = ClientFactory(), ClientFactory()
    first, second = running_mailing(), running_mailing()
    mine = [MessageFactory(mailing=first, client=client), MessageFactory(mailing=second, client=client)]
    sent = MessageFactory(mailing=running_mailing(), client=client, status=Status.SENT)
    theirs = MessageFactory(mailing=first, client=other)
    with django_capture_on_commit_callbacks() as enqueued:
        optout, created = optout_add(phone=client.phone, reason="asked by phone", source="api", user=operator)
    assert created and len(enqueued) == 1
    end_opted_out(optout.created_at.isoformat())  # what the enqueued task runs
    statuses = dict(Message.objects.values_list("id", "status"))
    assert [statuses[message.id] for message in mine] == [Status.OPTED_OUT, Status.OPTED_OUT]
    assert (statuses[sent.id], statuses[theirs.id]) == (Status.SENT, Status.PENDING)


def test_the_sweeper_ends_the_messages_of_recent_opt_outs_whose_task_was_lost():
    message = MessageFactory(mailing=running_mailing())
    opt_out(message.client)
    sweep_messages()
    message.refresh_from_db()
    assert message.status == Status.OPTED_OUT


def sent_to(client, *, ago: timedelta, now):
    return MessageFactory(client=client, status=Status.SENT, sent_at=now - ago)


def test_a_capped_client_waits_until_its_oldest_message_of_the_day_leaves_the_24_hours():
    now = timezone.now()
    capped, free = ClientFactory(), ClientFactory()
    sent_to(capped, ago=timedelta(hours=20), now=now)
    sent_to(capped, ago=timedelta(hours=2), now=now)
    sent_to(capped, ago=timedelta(hours=30), now=now)  # outside the 24 hours: not counted
    sent_to(free, ago=timedelta(hours=1), now=now)
    mailing = running_mailing()
    waits, goes = (
        MessageFactory(mailing=mailing, client=client, next_attempt_at=now) for client in (capped, free)
    )

    claim = services.messages_claim(mailing_id=mailing.pk, limit=10, now=now, cap=2)

    assert [row.id for row in claim.rows] == [goes.id]
    waits.refresh_from_db()
    assert (waits.status, waits.waiting_for, waits.attempts) == (Status.PENDING, WaitingFor.CAP, 0)
    # Two in the last 24 hours: the cap lifts when the older one (20 h ago) is 24 h old.
    assert abs(waits.next_attempt_at - (now + timedelta(hours=4))) < timedelta(seconds=1)
    later = services.messages_claim(
        mailing_id=mailing.pk, limit=10, now=now + timedelta(hours=4, seconds=1), cap=2
    )
    assert [row.id for row in later.rows] == [waits.id]


def test_a_message_in_flight_counts_towards_the_cap():
    now = timezone.now()
    client = ClientFactory()
    MessageFactory(client=client, status=Status.SENDING)
    mailing = running_mailing()
    message = MessageFactory(mailing=mailing, client=client, next_attempt_at=now)
    assert services.messages_claim(mailing_id=mailing.pk, limit=10, now=now, cap=1).rows == []
    message.refresh_from_db()
    assert message.waiting_for == WaitingFor.CAP
    assert services.messages_claim(mailing_id=mailing.pk, limit=10, now=now, cap=None).rows == []  # not due


def test_without_a_cap_nothing_is_held():
    now = timezone.now()
    client = ClientFactory()
    for hours in range(1, 6):
        sent_to(client, ago=timedelta(hours=hours), now=now)
    message = MessageFactory(mailing=running_mailing(), client=client, next_attempt_at=now)
    assert [
        row.id for row in services.messages_claim(mailing_id=message.mailing_id, limit=5, now=now).rows
    ] == [message.id]


def test_a_capped_message_expires_at_the_mailings_end_with_its_reason():
    now = timezone.now()
    message = MessageFactory(
        mailing=running_mailing(), waiting_for=WaitingFor.CAP, next_attempt_at=now + timedelta(hours=5)
    )
    services.messages_expire_pending(now=now + timedelta(hours=2))
    message.refresh_from_db()
    assert (message.status, message.last_error) == (Status.EXPIRED, CAP_ERROR)


@concurrent_writers
@pytest.mark.django_db(transaction=True)
def test_two_claims_at_once_for_one_client_in_two_mailings_send_one_message_under_a_cap_of_one():
    now = timezone.now()
    client = ClientFactory()
    first, second = (MessageFactory(client=client, next_attempt_at=now) for _ in range(2))
    claimed, committed = threading.Event(), threading.Event()

    def claim_and_hold():
        """The first claim, its transaction held open until the second claim has run."""
        try:
            with transaction.atomic():
                services.messages_claim(mailing_id=first.mailing_id, limit=5, now=now, cap=1)
                claimed.set()
                committed.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=claim_and_hold)
    holder.start()
    assert claimed.wait(timeout=30)
    meanwhile = in_other_connection(
        services.messages_claim, mailing_id=second.mailing_id, limit=5, now=now, cap=1
    )
    committed.set()
    holder.join()
    after = services.messages_claim(mailing_id=second.mailing_id, limit=5, now=now, cap=1)

    assert meanwhile.rows == [] and after.rows == []  # its client was held, then at the cap
    second.refresh_from_db()
    assert (second.status, second.waiting_for) == (Status.PENDING, WaitingFor.CAP)
    assert Message.objects.get(pk=first.pk).status == Status.SENDING
