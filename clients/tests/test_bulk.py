"""POST /clients/bulk/: many clients created or updated by phone in one request."""

import pytest
from django.urls import reverse

from clients.models import Client
from clients.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

BULK_URL = reverse("client-bulk")


def test_items_create_or_update_only_the_fields_they_name(api_client, settings):
    settings.DEFAULT_CLIENT_TIMEZONE = "Asia/Omsk"
    ported = ClientFactory(phone="79160000001", operator_code="999", tag="old", timezone="Asia/Tokyo")
    same = ClientFactory(phone="79160000002", tag="vip")

    response = api_client.post(
        BULK_URL,
        {
            "clients": [
                {"phone": "79160000001", "tag": "new"},
                {"phone": "79160000002", "tag": "vip"},
                {"phone": "79250000003"},
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.data
    assert response.data == {
        "created": 1,
        "updated": 1,
        "unchanged": 1,
        "changed": {"operator_code": 0, "tag": 1, "timezone": 0, "attributes": 0},
        "invalid_count": 0,
        "invalid": [],
    }
    ported.refresh_from_db()
    assert (ported.operator_code, ported.tag, ported.timezone) == ("999", "new", "Asia/Tokyo")
    assert Client.objects.get(pk=same.pk).updated_at == same.updated_at  # not written
    new = Client.objects.get(phone="79250000003")
    assert (new.operator_code, new.tag, new.timezone) == ("925", "", "Asia/Omsk")


def test_bad_items_are_listed_by_position_and_the_good_ones_written(api_client):
    response = api_client.post(
        BULK_URL,
        {
            "clients": [
                {"phone": "79160000001", "timezone": ""},
                {"phone": 79160000002},
                {"phone": "79160000003", "name": "x"},
                {"tag": "no phone"},
                {"phone": "79160000005", "tag": "ok"},
                {"phone": "79160000005", "tag": "again"},
            ]
        },
        format="json",
    )

    assert response.status_code == 200, response.data
    assert response.data["created"] == 1
    invalid = {row["row"]: set(row["errors"]) for row in response.data["invalid"]}
    assert invalid == {1: {"timezone"}, 2: {"phone"}, 3: {"name"}, 4: {"phone"}, 6: {"phone"}}
    assert list(Client.objects.values_list("phone", "tag")) == [("79160000005", "ok")]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"clients": []},
        {"clients": {"phone": "79160000001"}},
        {"clients": ["79160000001"]},
        {"clients": [], "extra": 1},
        [],
    ],
    ids=["no list", "empty", "not a list", "not objects", "unknown field", "bare list"],
)
def test_a_malformed_body_is_a_bad_request(api_client, body):
    response = api_client.post(BULK_URL, body, format="json")

    assert response.status_code == 400
    assert not Client.objects.exists()


def test_more_items_than_allowed_is_a_bad_request(api_client, settings):
    limit = settings.CLIENT_BULK_MAX_ITEMS
    items = [{"phone": f"79{n:09d}"} for n in range(limit + 1)]

    response = api_client.post(BULK_URL, {"clients": items}, format="json")

    assert response.status_code == 400
    assert "clients" in response.data
    assert not Client.objects.exists()


def test_a_request_counts_once_against_the_write_rate_whatever_its_items(api_client, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user_write": "2/min"}}
    batch = [{"phone": f"79{n:09d}"} for n in range(500)]

    statuses = [api_client.post(BULK_URL, {"clients": batch}, format="json").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
    assert Client.objects.count() == 500


def test_viewers_cannot_write_in_bulk(viewer_client):
    response = viewer_client.post(BULK_URL, {"clients": [{"phone": "79160000001"}]}, format="json")

    assert response.status_code == 403
