from datetime import datetime, timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from rest_framework.pagination import PageNumberPagination

from mailings.models import Mailing, MailingState
from mailings.tests.factories import MailingFactory, mailing_in
from messages_app.models import Message, MessageStatus, WaitingFor
from messages_app.tests.factories import (
    MessageFactory,
    create_messages,
    three_mailings_with_messages,
    zero_counts,
)

pytestmark = pytest.mark.django_db

LIST_URL = reverse("mailing-statistics")
STATUSES = MessageStatus.values


def statistics_url(mailing: Mailing) -> str:
    return reverse("mailing-statistics-detail", args=[mailing.pk])


@pytest.fixture
def mailings_with_messages():
    return three_mailings_with_messages()


def test_statistics_count_every_mailings_messages_by_status(api_client, mailings_with_messages):
    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert response.data["count"] == 3
    counts = {row["id"]: row["message_counts"] for row in response.data["results"]}
    assert counts == mailings_with_messages


def test_statistics_name_every_status_even_without_messages(api_client):
    MailingFactory()

    response = api_client.get(LIST_URL)

    assert response.data["results"][0]["message_counts"] == zero_counts()


def test_statistics_rows_carry_the_mailing_fields(api_client):
    mailing = MailingFactory(filter_tag="vip")

    row = api_client.get(LIST_URL).data["results"][0]

    assert row["id"] == mailing.pk
    assert row["text"] == mailing.text
    assert row["audience"] == "clients with tag 'vip'"
    assert {"start_at", "end_at", "launched_at", "filter_operator_code", "filter_tag"} <= set(row)


def test_statistics_take_the_mailing_list_filters(api_client):
    wanted = MailingFactory(filter_tag="vip")
    create_messages(wanted, {"sent": 2})
    create_messages(MailingFactory(filter_tag="other"), {"sent": 5})

    response = api_client.get(LIST_URL, {"filter_tag": "vip"})

    assert [(row["id"], row["message_counts"]["sent"]) for row in response.data["results"]] == [
        (wanted.pk, 2)
    ]


@pytest.mark.parametrize("mailings", [1, 20])
def test_statistics_list_takes_a_constant_number_of_queries(api_client, django_assert_num_queries, mailings):
    for mailing in MailingFactory.create_batch(mailings):
        create_messages(mailing, {"pending": 1, "sent": 2, "failed": 1})

    with django_assert_num_queries(6):  # token, role permissions (2), count, page of mailings, their counts
        response = api_client.get(LIST_URL)

    assert response.data["count"] == mailings
    assert [row["message_counts"] for row in response.data["results"]] == [
        {**zero_counts(), "pending": 1, "sent": 2, "failed": 1, "total": 4}
    ] * mailings


def test_a_deep_statistics_page_counts_its_own_mailings_in_as_many_queries(
    api_client, monkeypatch, django_assert_num_queries
):
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    expected = {}
    for number in range(1, 8):
        mailing = MailingFactory()
        expected[mailing.pk] = create_messages(mailing, {"sent": number, "failed": 1})
    ordered = list(Mailing.objects.values_list("pk", flat=True))

    with django_assert_num_queries(6):  # token, role permissions (2), count, page of mailings, their counts
        response = api_client.get(LIST_URL, {"page": 3})

    assert response.data["count"] == 7
    page = {row["id"]: row["message_counts"] for row in response.data["results"]}
    assert list(page) == ordered[4:6]
    assert page == {pk: expected[pk] for pk in ordered[4:6]}


def test_mailing_statistics_give_fields_counts_and_messages(api_client, mailings_with_messages):
    mailing = Mailing.objects.get(text="every status")

    response = api_client.get(statistics_url(mailing))

    assert response.status_code == 200
    assert response.data["id"] == mailing.pk
    assert response.data["text"] == "every status"
    assert response.data["audience"] == "all clients"
    assert response.data["message_counts"] == mailings_with_messages[mailing.pk]
    page = response.data["messages"]
    assert page["count"] == 21
    assert {row["mailing"] for row in page["results"]} == {mailing.pk}
    assert [row["id"] for row in page["results"]] == list(
        mailing.messages.order_by("id").values_list("id", flat=True)
    )


def test_mailing_statistics_filter_messages_by_status(api_client, mailings_with_messages):
    mailing = Mailing.objects.get(text="every status")

    response = api_client.get(statistics_url(mailing), {"status": "failed"})

    assert response.status_code == 200
    page = response.data["messages"]
    assert page["count"] == 4
    assert {row["status"] for row in page["results"]} == {"failed"}
    # The counts stay those of the whole mailing.
    assert response.data["message_counts"]["total"] == 21


def test_mailing_statistics_paginate_messages(api_client, monkeypatch):
    monkeypatch.setattr(PageNumberPagination, "page_size", 2)
    mailing = MailingFactory()
    create_messages(mailing, {"sent": 3})

    first = api_client.get(statistics_url(mailing)).data["messages"]
    second = api_client.get(statistics_url(mailing), {"page": 2}).data["messages"]

    assert first["count"] == 3
    assert (len(first["results"]), len(second["results"])) == (2, 1)
    assert first["next"].endswith("?page=2")
    assert second["next"] is None


def test_mailing_statistics_refuse_an_unknown_status(api_client):
    mailing = MailingFactory()

    response = api_client.get(statistics_url(mailing), {"status": "bounced"})

    assert response.status_code == 400
    assert list(response.data) == ["status"]


def test_statistics_of_an_unknown_mailing_are_not_found(api_client):
    response = api_client.get(reverse("mailing-statistics-detail", args=[999]))

    assert response.status_code == 404


def test_mailing_statistics_take_a_constant_number_of_queries(api_client, django_assert_num_queries):
    mailing = MailingFactory()
    create_messages(mailing, {"pending": 10, "sent": 20, "failed": 5})

    with django_assert_num_queries(7):  # token, role permissions (2), mailing, its tallies, sent lately, page
        response = api_client.get(statistics_url(mailing))

    assert response.data["message_counts"]["total"] == 35


def test_deleting_a_client_keeps_the_statistics(api_client, mailings_with_messages):
    mailing = Mailing.objects.get(text="every status")
    client = mailing.messages.filter(status=MessageStatus.SENT).first().client

    assert api_client.delete(reverse("client-detail", args=[client.pk])).status_code == 204

    listed = {row["id"]: row["message_counts"] for row in api_client.get(LIST_URL).data["results"]}
    detail = api_client.get(statistics_url(mailing)).data
    assert listed == mailings_with_messages
    assert detail["message_counts"] == mailings_with_messages[mailing.pk]
    assert None in {row["client"] for row in detail["messages"]["results"]}


def windowed_mailing_with_waiting_messages() -> Mailing:
    """A mailing with a local window: 3 messages wait for it, 2 are due, 1 waits for a retry."""
    mailing = MailingFactory(local_window_start="09:00", local_window_end="21:00")
    later = timezone.now() + timedelta(hours=3)
    MessageFactory.create_batch(
        3, mailing=mailing, status="pending", next_attempt_at=later, waiting_for=WaitingFor.WINDOW
    )
    MessageFactory.create_batch(2, mailing=mailing, status="pending")
    MessageFactory(mailing=mailing, status="pending", next_attempt_at=later, last_error="HTTP 503")
    # Deferred for the window, but the window has opened since: due, no longer waiting for it.
    MessageFactory(mailing=mailing, status="pending", waiting_for=WaitingFor.WINDOW)
    return mailing


def test_statistics_count_the_messages_waiting_for_their_local_window(api_client):
    windowed = windowed_mailing_with_waiting_messages()
    plain = MailingFactory()
    create_messages(plain, {"pending": 2})

    listed = {row["id"]: row["message_counts"] for row in api_client.get(LIST_URL).data["results"]}
    detail = api_client.get(statistics_url(windowed)).data["message_counts"]

    assert listed[windowed.pk] == {**zero_counts(), "pending": 7, "total": 7, "waiting_for_window": 3}
    assert listed[plain.pk]["waiting_for_window"] == 0
    assert detail == listed[windowed.pk]


@pytest.mark.parametrize("mailings", [1, 20])
def test_statistics_list_with_windows_takes_a_constant_number_of_queries(
    api_client, django_assert_num_queries, mailings
):
    for _ in range(mailings):
        windowed_mailing_with_waiting_messages()
        MailingFactory()

    # token, role permissions (2), count, page of mailings, their message counts, the waiting ones
    with django_assert_num_queries(7):
        response = api_client.get(LIST_URL)

    waiting = sorted(row["message_counts"]["waiting_for_window"] for row in response.data["results"])
    assert waiting == [0] * mailings + [3] * mailings


def test_mailing_statistics_show_progress_rate_and_finish_while_running(api_client):
    mailing = mailing_in(MailingState.RUNNING, pending=60, sent=20, failed=20)
    now = timezone.now()
    # 30 sent within the last minute, the rest long ago: 0.5 messages/s.
    sent = Message.objects.filter(mailing=mailing, status=MessageStatus.SENT)
    sent.update(sent_at=now - timedelta(hours=1))
    MessageFactory.create_batch(
        30, mailing=mailing, status=MessageStatus.SENT, sent_at=now - timedelta(seconds=5)
    )

    with time_machine.travel(now, tick=False):
        response = api_client.get(statistics_url(mailing))

    progress = response.data["progress"]
    assert progress["percent_done"] == round(100 * 70 / 130, 1)
    assert progress["rate_per_second"] == 0.5
    assert progress["estimated_finish_at"] == (now + timedelta(seconds=120)).isoformat().replace(
        "+00:00", "Z"
    )


def running_with_a_window(*, due: int, sent_last_minute: int, waiting_until: datetime) -> Mailing:
    """A running mailing with a local window: `due` pending messages, 3 waiting for the window to
    open at `waiting_until`, and `sent_last_minute` sent 5 seconds ago."""
    mailing = mailing_in(MailingState.RUNNING, pending=due)
    Mailing.objects.filter(pk=mailing.pk).update(local_window_start="09:00", local_window_end="21:00")
    MessageFactory.create_batch(
        3, mailing=mailing, status="pending", next_attempt_at=waiting_until, waiting_for=WaitingFor.WINDOW
    )
    MessageFactory.create_batch(
        sent_last_minute,
        mailing=mailing,
        status=MessageStatus.SENT,
        sent_at=timezone.now() - timedelta(seconds=5),
    )
    return mailing


def progress_at(api_client, mailing, now) -> dict:
    with time_machine.travel(now, tick=False):
        return api_client.get(statistics_url(mailing)).data["progress"]


def iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_finish_is_no_earlier_than_the_window_opening_that_messages_wait_for(api_client):
    now = timezone.now()
    opening = now + timedelta(hours=3)
    # 30 sent in the last minute: 0.5 messages/s, 13 unsent would take 26 s at that rate.
    mailing = running_with_a_window(due=10, sent_last_minute=30, waiting_until=opening)

    progress = progress_at(api_client, mailing, now)

    assert progress["estimated_finish_at"] == iso(opening)


def test_the_finish_at_the_rate_stands_when_later_than_the_window_opening(api_client):
    now = timezone.now()
    # 63 unsent at 0.5 messages/s: 126 s, after the opening in 10 s.
    mailing = running_with_a_window(due=60, sent_last_minute=30, waiting_until=now + timedelta(seconds=10))

    progress = progress_at(api_client, mailing, now)

    assert progress["estimated_finish_at"] == iso(now + timedelta(seconds=126))


def test_with_nothing_sent_lately_and_every_unsent_message_waiting_the_finish_is_the_opening(api_client):
    now = timezone.now()
    opening = now + timedelta(hours=2)
    mailing = running_with_a_window(due=0, sent_last_minute=0, waiting_until=opening)

    progress = progress_at(api_client, mailing, now)

    assert progress["rate_per_second"] == 0
    assert progress["estimated_finish_at"] == opening.isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("state", [MailingState.PAUSED, MailingState.FINISHED, MailingState.SCHEDULED])
def test_no_finish_is_estimated_unless_running(api_client, state):
    mailing = mailing_in(state, pending=1)
    MessageFactory(mailing=mailing, status=MessageStatus.SENT, sent_at=timezone.now())

    progress = api_client.get(statistics_url(mailing)).data["progress"]

    assert progress["estimated_finish_at"] is None
    assert progress["percent_done"] == 50.0


def test_totals_count_the_messages_of_the_filtered_mailings_by_status(
    api_client, mailings_with_messages, django_assert_num_queries
):
    mailing_in(MailingState.CANCELLED, expired=7)

    with django_assert_num_queries(5):  # token, role permissions (2), tallies, waiting for the window
        everything = api_client.get(reverse("mailing-statistics-totals"))
    only_cancelled = api_client.get(reverse("mailing-statistics-totals"), {"state": "cancelled"})

    assert everything.status_code == 200
    fixture_counts = mailings_with_messages.values()
    assert everything.data["message_counts"]["total"] == sum(c["total"] for c in fixture_counts) + 7
    assert everything.data["message_counts"]["expired"] == sum(c["expired"] for c in fixture_counts) + 7
    assert only_cancelled.data["message_counts"] == {**zero_counts(), "expired": 7, "total": 7}


def test_statistics_list_filters_by_state_and_period(api_client):
    running = mailing_in(MailingState.RUNNING, pending=1)
    mailing_in(MailingState.FINISHED)

    by_state = api_client.get(LIST_URL, {"state": "running"})
    by_period = api_client.get(
        LIST_URL, {"start_at_after": (timezone.now() - timedelta(minutes=6)).isoformat()}
    )

    assert [row["id"] for row in by_state.data["results"]] == [running.pk]
    assert [row["id"] for row in by_period.data["results"]] == [running.pk]
