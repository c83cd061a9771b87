"""Multi-value filters, the audience preview and the audience a launch records."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.models import Client, OptOut
from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import launch
from messages_app.models import Message

pytestmark = pytest.mark.django_db

AUDIENCE_URL = reverse("mailing-audience")


@pytest.fixture
def clients():
    """Two of each (operator code, tag) pair among 916/925/999 and vip/new/"" ."""
    made = {}
    for code in ("916", "925", "999"):
        for tag in ("vip", "new", ""):
            made[code, tag] = [ClientFactory(operator_code=code, tag=tag).pk for _ in range(2)]
    return made


def ids(clients, pairs) -> set[int]:
    return {pk for pair in pairs for pk in clients[pair]}


def test_audience_counts_any_of_several_tags_and_codes(api_client, clients, django_assert_max_num_queries):
    with django_assert_max_num_queries(6):  # token, role permissions (2), counts (2) and sample
        response = api_client.get(
            AUDIENCE_URL, {"filter_tags": "vip,new", "filter_operator_codes": ["916", "925"]}
        )

    assert response.status_code == 200, response.data
    assert response.data["count"] == 8
    assert response.data["audience"] == "clients with operator code 916 or 925 and tag 'new' or 'vip'"
    sample = response.data["sample"]
    assert len(sample) == 5
    wanted = ids(clients, [(c, t) for c in ("916", "925") for t in ("vip", "new")])
    assert {row["id"] for row in sample} <= wanted
    assert all("*" in row["phone"] for row in sample)


def test_audience_leaves_out_opted_out_phones_and_says_how_many(api_client, clients):
    opted_out = Client.objects.filter(pk__in=clients["916", "vip"])
    OptOut.objects.bulk_create(OptOut(phone=client.phone, source="api") for client in opted_out)

    response = api_client.get(AUDIENCE_URL, {"filter_operator_code": "916"})

    assert response.status_code == 200, response.data
    assert (response.data["count"], response.data["left_out"]) == (4, {"opted_out": 2})
    assert not {row["id"] for row in response.data["sample"]} & set(clients["916", "vip"])


def test_audience_keeps_the_one_value_fields_and_merges_them_with_the_lists(api_client, clients):
    one = api_client.get(AUDIENCE_URL, {"filter_tag": "vip", "filter_operator_code": "999"})
    merged = api_client.get(AUDIENCE_URL, {"filter_tag": "vip", "filter_tags": "new"})
    # Pieces between commas that are empty or whitespace (str.strip's, \x1e included) are left out.
    spaced = api_client.get(AUDIENCE_URL, {"filter_tags": "new, ,\x1e,"})
    everyone = api_client.get(AUDIENCE_URL)

    assert one.data["count"] == 2
    assert merged.data["count"] == 12
    assert (spaced.status_code, spaced.data["count"]) == (200, 6)
    assert everyone.data["count"] == 18
    assert everyone.data["audience"] == "all clients"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"filter_operator_codes": "916,12"}, "filter_operator_codes"),
        ({"filter_operator_code": "abc"}, "filter_operator_code"),
        ({"filter_tags": "x" * 65}, "filter_tags"),
        ({"filter_tagz": "vip"}, "filter_tagz"),
        ({"filter_operator_code": ""}, "filter_operator_code"),
        ({"filter_tag": ""}, "filter_tag"),
        ({"filter_tags": ""}, "filter_tags"),  # not "no filter", which would be every client
    ],
)
def test_audience_answers_bad_filters_with_field_errors(api_client, query, field):
    response = api_client.get(AUDIENCE_URL, query)

    assert response.status_code == 400
    assert field in response.data


def test_a_mailing_takes_list_filters_and_describes_them(api_client):
    start = timezone.now() + timedelta(days=1)
    response = api_client.post(
        reverse("mailing-list"),
        {
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(hours=1)).isoformat(),
            "text": "Hi",
            "filter_tags": ["vip", "new"],
            "filter_operator_codes": ["916"],
        },
    )

    assert response.status_code == 201, response.data
    assert response.data["filter_tags"] == ["vip", "new"]
    assert response.data["audience"] == "clients with operator code 916 and tag 'new' or 'vip'"


def test_a_mailing_refuses_bad_list_values(api_client):
    start = timezone.now() + timedelta(days=1)
    response = api_client.post(
        reverse("mailing-list"),
        {
            "start_at": start.isoformat(),
            "end_at": (start + timedelta(hours=1)).isoformat(),
            "text": "Hi",
            "filter_operator_codes": ["9160"],
            "filter_tags": "vip",
        },
    )

    assert response.status_code == 400
    assert set(response.data) == {"filter_operator_codes", "filter_tags"}


def test_fan_out_reaches_any_of_the_tags_and_codes_and_records_the_audience(clients):
    now = timezone.now()
    mailing = MailingFactory(filter_tag="vip", filter_tags=["new"], filter_operator_codes=["916", "999"])
    Mailing.objects.filter(pk=mailing.pk).update(start_at=now, end_at=now + timedelta(hours=1))

    launch.mailing_launch(mailing_id=mailing.pk)

    reached = set(Message.objects.filter(mailing=mailing).values_list("client_id", flat=True))
    assert reached == ids(clients, [(c, t) for c in ("916", "999") for t in ("vip", "new")])
    assert Mailing.objects.get(pk=mailing.pk).audience_size == 8
