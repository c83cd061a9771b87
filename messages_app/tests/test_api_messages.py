from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from messages_app.models import Message, MessageStatus
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("message-list")


def ids(response) -> list[int]:
    return [row["id"] for row in response.data["results"]]


def test_retrieve_gives_the_message_fields(api_client):
    sent_at = datetime(2100, 1, 1, 9, 30, tzinfo=UTC)
    message = MessageFactory(
        status=MessageStatus.SENT,
        attempts=2,
        last_error="timeout",
        sent_at=sent_at,
        provider="acme",
        provider_message_id="a-77",
    )

    response = api_client.get(reverse("message-detail", args=[message.pk]))

    assert response.status_code == 200
    assert response.data == {
        "id": message.pk,
        "mailing": message.mailing_id,
        "client": message.client_id,
        "phone": message.client.phone,
        "status": "sent",
        "attempts": 2,
        "last_error": "timeout",
        "created_at": response.data["created_at"],
        "sent_at": "2100-01-01T09:30:00Z",
        "delivered_at": None,
        "next_attempt_at": response.data["next_attempt_at"],
        "waiting_for": "",
        "provider": "acme",
        "provider_message_id": "a-77",
    }


def test_a_message_keeps_its_recipient_when_the_client_is_deleted_or_renumbered(api_client):
    renumbered, deleted = MessageFactory(), MessageFactory()
    phones = {renumbered.pk: renumbered.client.phone, deleted.pk: deleted.client.phone}
    renumbered.client.phone = "79990000001"
    renumbered.client.save()
    deleted.client.delete()

    answers = {pk: api_client.get(reverse("message-detail", args=[pk])).data for pk in phones}

    assert {pk: answer["phone"] for pk, answer in answers.items()} == phones
    assert answers[deleted.pk]["client"] is None


def test_viewers_see_a_messages_recipient_masked(viewer_client):
    message = MessageFactory(client__phone="79161234567")

    detail = viewer_client.get(reverse("message-detail", args=[message.pk]))
    listed = viewer_client.get(LIST_URL, {"mailing": message.mailing_id})

    assert detail.data["phone"] == listed.data["results"][0]["phone"] == "7916*****67"


def test_list_filters_by_mailing_client_and_status(api_client):
    wanted = MessageFactory(status=MessageStatus.FAILED)
    MessageFactory(mailing=wanted.mailing, status=MessageStatus.FAILED)  # another client
    MessageFactory(mailing=wanted.mailing, client=None, status=MessageStatus.FAILED)
    MessageFactory(client=wanted.client, status=MessageStatus.FAILED)  # another mailing

    response = api_client.get(
        LIST_URL, {"mailing": wanted.mailing_id, "client": wanted.client_id, "status": "failed"}
    )

    assert response.status_code == 200
    assert ids(response) == [wanted.pk]


def test_list_filters_by_status(api_client):
    sent = MessageFactory.create_batch(2, status=MessageStatus.SENT)
    MessageFactory(status=MessageStatus.PENDING)

    response = api_client.get(LIST_URL, {"status": "sent"})

    assert ids(response) == [message.pk for message in sent]


def test_filter_by_a_deleted_mailing_gives_an_empty_page(api_client):
    MessageFactory()

    response = api_client.get(LIST_URL, {"mailing": 999})

    assert response.status_code == 200
    assert response.data["count"] == 0


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "bounced"}, "status"),
        ({"mailing": "abc"}, "mailing"),
        ({"client": "1.5"}, "client"),
        ({"mailing": "0.0"}, "mailing"),  # Django's IntegerField alone takes it as 0
    ],
)
def test_bad_filter_value_is_a_field_error(api_client, params, field):
    response = api_client.get(LIST_URL, params)

    assert response.status_code == 400
    assert list(response.data) == [field]


def test_list_orders_by_the_requested_field(api_client):
    first = MessageFactory(sent_at=datetime(2100, 1, 2, tzinfo=UTC))
    second = MessageFactory(sent_at=datetime(2100, 1, 1, tzinfo=UTC))

    assert ids(api_client.get(LIST_URL)) == [first.pk, second.pk]
    assert ids(api_client.get(LIST_URL, {"ordering": "sent_at"})) == [second.pk, first.pk]
    assert ids(api_client.get(LIST_URL, {"ordering": "-id"})) == [second.pk, first.pk]


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_messages_are_read_only(api_client, method):
    message = MessageFactory()
    url = LIST_URL if method == "post" else reverse("message-detail", args=[message.pk])

    response = getattr(api_client, method)(url, {"status": "sent"})

    assert response.status_code == 405
    message.refresh_from_db()
    assert message.status == MessageStatus.PENDING
    assert Message.objects.count() == 1


def test_list_takes_a_constant_number_of_queries(api_client, django_assert_max_num_queries):
    MessageFactory.create_batch(30)

    with django_assert_max_num_queries(5):  # token, role permissions (user, groups), count, page
        response = api_client.get(LIST_URL)

    assert response.data["count"] == 30


@pytest.mark.parametrize("status", [None, "sent", "pending"])
def test_one_mailings_page_count_comes_from_its_tallies_not_a_count(api_client, status):
    mailing = MessageFactory(status=MessageStatus.SENT).mailing
    MessageFactory.create_batch(2, mailing=mailing, status=MessageStatus.SENT)
    MessageFactory(mailing=mailing, status=MessageStatus.PENDING)
    MessageFactory(status=MessageStatus.SENT)  # another mailing's
    params = {"mailing": mailing.pk} | ({"status": status} if status else {})

    with CaptureQueriesContext(connection) as queries:
        response = api_client.get(LIST_URL, params)

    expected = Message.objects.filter(mailing=mailing, **({"status": status} if status else {}))
    assert response.data["count"] == expected.count() == {None: 4, "sent": 3, "pending": 1}[status]
    assert ids(response) == sorted(expected.values_list("id", flat=True))
    assert not [query for query in queries if "COUNT(" in query["sql"].upper()]


def test_an_id_beyond_64_bits_is_a_field_error(api_client):
    response = api_client.get("/api/v1/messages/", {"mailing": 2**63})

    assert response.status_code == 400
    assert "mailing" in response.json()
