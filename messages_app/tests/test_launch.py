"""Launch: the post_save hook, the beat scanner and the fan-out that creates one message per recipient."""

from datetime import timedelta

import pytest
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings import tasks
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import launch
from messages_app.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued_launches(monkeypatch):
    launched = []

    def send_task(name, args=(), **options):
        assert name == tasks.LAUNCH_MAILING
        launched.append(*args)

    monkeypatch.setattr(tasks.current_app, "send_task", send_task)
    return launched


def in_window(**fields) -> Mailing:
    now = timezone.now()
    return MailingFactory(start_at=now - timedelta(minutes=1), end_at=now + timedelta(hours=1), **fields)


def recipients_of(mailing: Mailing) -> set[int]:
    return set(Message.objects.filter(mailing=mailing).values_list("client_id", flat=True))


def test_fan_out_creates_one_pending_message_per_client(enqueued_launches):
    clients = ClientFactory.create_batch(7)
    mailing = in_window()

    assert launch.mailing_launch(mailing_id=mailing.pk)

    assert recipients_of(mailing) == {client.pk for client in clients}
    assert set(Message.objects.filter(mailing=mailing).values_list("status", flat=True)) == {"pending"}
    # Each message keeps the phone it goes to, whatever becomes of the client.
    phones = dict(Message.objects.filter(mailing=mailing).values_list("client_id", "phone"))
    assert phones == {client.pk: client.phone for client in clients}
    mailing.refresh_from_db()
    assert mailing.launched_at and mailing.fanout_completed_at
    assert mailing.fanout_cursor == max(client.pk for client in clients)


@pytest.mark.parametrize(
    ("operator_code", "tag", "expected"),
    [
        ("901", "", {"901-vip", "901-new"}),
        ("", "vip", {"901-vip", "902-vip"}),
        ("901", "vip", {"901-vip"}),
        ("", "", {"901-vip", "901-new", "902-vip", "902-none"}),
    ],
)
def test_filter_selects_clients_by_code_tag_or_both(enqueued_launches, operator_code, tag, expected):
    named = {
        "901-vip": ClientFactory(operator_code="901", tag="vip"),
        "901-new": ClientFactory(operator_code="901", tag="new"),
        "902-vip": ClientFactory(operator_code="902", tag="vip"),
        "902-none": ClientFactory(operator_code="902", tag=""),
    }
    mailing = in_window(filter_operator_code=operator_code, filter_tag=tag)

    launch.mailing_launch(mailing_id=mailing.pk)

    assert recipients_of(mailing) == {named[name].pk for name in expected}


def test_fan_out_works_in_batches_from_its_checkpoint(enqueued_launches, settings):
    settings.FANOUT_BATCH_SIZE = 3
    clients = ClientFactory.create_batch(8)
    mailing = in_window()
    # A launcher died after the first batch: its lease ran out, its checkpoint stayed.
    Message.objects.bulk_create(Message(mailing=mailing, client=client) for client in clients[:3])
    Mailing.objects.filter(pk=mailing.pk).update(
        launched_at=timezone.now(),
        fanout_cursor=clients[2].pk,
        fanout_lease_until=timezone.now() - timedelta(seconds=1),
    )

    assert launch.mailing_launch(mailing_id=mailing.pk)

    assert Message.objects.filter(mailing=mailing).count() == 8
    assert recipients_of(mailing) == {client.pk for client in clients}


def test_launching_again_creates_nothing(enqueued_launches):
    ClientFactory.create_batch(4)
    mailing = in_window()
    launch.mailing_launch(mailing_id=mailing.pk)

    assert not launch.mailing_launch(mailing_id=mailing.pk)

    assert Message.objects.filter(mailing=mailing).count() == 4


def test_a_live_launchers_lease_keeps_a_second_one_out(enqueued_launches):
    ClientFactory.create_batch(2)
    mailing = in_window()
    Mailing.objects.filter(pk=mailing.pk).update(fanout_lease_until=timezone.now() + timedelta(minutes=1))

    assert not launch.mailing_launch(mailing_id=mailing.pk)
    assert not Message.objects.filter(mailing=mailing).exists()


def test_replayed_batch_inserts_no_duplicate(enqueued_launches):
    clients = ClientFactory.create_batch(3)
    mailing = in_window()
    Message.objects.create(mailing=mailing, client=clients[0], status=Message.Status.SENT)

    launch.mailing_launch(mailing_id=mailing.pk)

    assert Message.objects.filter(mailing=mailing).count() == 3
    assert Message.objects.get(mailing=mailing, client=clients[0]).status == Message.Status.SENT


def test_clients_created_after_the_fan_out_are_not_part_of_the_mailing(enqueued_launches):
    ClientFactory.create_batch(2)
    mailing = in_window()
    launch.mailing_launch(mailing_id=mailing.pk)

    ClientFactory()
    launch.mailing_launch(mailing_id=mailing.pk)

    assert Message.objects.filter(mailing=mailing).count() == 2


def test_future_and_ended_mailings_are_not_launched(enqueued_launches):
    ClientFactory()
    future = MailingFactory()
    ended = MailingFactory(
        start_at=timezone.now() - timedelta(hours=2), end_at=timezone.now() - timedelta(hours=1)
    )

    assert not launch.mailing_launch(mailing_id=future.pk)
    assert not launch.mailing_launch(mailing_id=ended.pk)
    assert not Message.objects.exists()


def test_saving_a_mailing_inside_its_window_launches_it_after_commit(
    enqueued_launches, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        active = in_window()
        MailingFactory()  # starts tomorrow: left to the scanner

    assert enqueued_launches == [active.pk]


def test_scanner_launches_mailings_whose_start_has_come(enqueued_launches):
    now = timezone.now()
    due = MailingFactory()
    not_yet = MailingFactory()
    done = MailingFactory()
    Mailing.objects.filter(pk=due.pk).update(start_at=now - timedelta(seconds=1))
    Mailing.objects.filter(pk=done.pk).update(start_at=now - timedelta(seconds=1), fanout_completed_at=now)

    tasks.launch_due_mailings()

    assert enqueued_launches == [due.pk]
    assert not_yet.pk not in enqueued_launches
