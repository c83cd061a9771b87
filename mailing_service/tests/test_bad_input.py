"""Bad input under /api/ is a JSON 4xx naming what is wrong: never a 500, never an HTML page."""

import logging
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from clients.models import client_timezones
from clients.tests.factories import ClientFactory
from mailings.tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

FILTERED_LISTS = [
    "/api/v1/clients/",
    "/api/v1/mailings/",
    "/api/v1/mailings/statistics/",
    "/api/v1/messages/",
]


@pytest.mark.parametrize("path", ["/api/v1/mailings/", "/api/v1/mailings/statistics/"])
@pytest.mark.parametrize("offset", ["+16:00", "-16:00", "+23:59"])
def test_date_filter_with_an_offset_postgresql_refuses_is_converted_to_utc(api_client, path, offset):
    mailing = MailingFactory(start_at=datetime(2030, 1, 3, tzinfo=UTC))

    response = api_client.get(path, {"start_at_after": f"2030-01-01T12:00:00{offset}"})

    assert response.status_code == 200, response.content
    assert [row["id"] for row in response.json()["results"]] == [mailing.pk]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+16:00", "9999-12-31T23:59:59-16:00"])
def test_date_filter_out_of_range_in_utc_is_a_400_naming_it(api_client, moment):
    response = api_client.get("/api/v1/mailings/", {"start_at_before": moment})

    assert response.status_code == 400
    assert list(response.json()) == ["start_at_before"]


def test_deeply_nested_json_is_a_400(api_client):
    response = api_client.post(
        "/api/v1/clients/", "[" * 100_000 + "]" * 100_000, content_type="application/json"
    )

    assert response.status_code == 400
    assert response.json() == {"detail": "JSON parse error - nested too deep."}


def test_a_10_mb_body_is_a_json_413_without_an_error_in_the_log(api_client, caplog):
    body = b'{"phone": "' + b"7" * 10_000_000 + b'"}'

    with caplog.at_level(logging.INFO):
        response = api_client.post("/api/v1/clients/", body, content_type="application/json")

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert "larger than" in response.json()["detail"]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR or record.exc_info]


def test_a_body_that_is_not_json_is_a_415(api_client):
    response = api_client.post("/api/v1/clients/", "phone=79161234567", content_type="text/plain")

    assert response.status_code == 415


@pytest.mark.parametrize("page", ["-1", "0", "abc", "1.5", ""])
def test_a_malformed_page_number_is_a_400_naming_it(api_client, page):
    response = api_client.get("/api/v1/clients/", {"page": page})

    assert response.status_code == 400
    assert list(response.json()) == ["page"]


def test_a_page_past_the_last_is_a_json_404(api_client):
    response = api_client.get("/api/v1/clients/", {"page": "99"})

    assert response.status_code == 404
    assert response.json() == {"detail": "Invalid page."}


@pytest.mark.parametrize(
    "path, parameter",
    [
        ("/api/v1/clients/", "tag"),
        ("/api/v1/clients/", "operator_code"),
        ("/api/v1/mailings/", "filter_tag"),
        ("/api/v1/mailings/", "launched"),
        ("/api/v1/mailings/", "start_at_after"),
        ("/api/v1/mailings/statistics/", "filter_operator_code"),
        ("/api/v1/messages/", "status"),
        ("/api/v1/messages/", "mailing"),
    ],
)
def test_an_empty_filter_value_is_a_400_naming_it(api_client, path, parameter):
    response = api_client.get(path, {parameter: ""})

    assert response.status_code == 400
    assert list(response.json()) == [parameter]


def test_an_empty_status_on_one_mailings_statistics_is_a_400(api_client):
    mailing = MailingFactory()

    response = api_client.get(reverse("mailing-statistics-detail", args=[mailing.pk]), {"status": ""})

    assert response.status_code == 400
    assert list(response.json()) == ["status"]


@pytest.mark.parametrize("value", ["maybe", "yes", "2"])
def test_launched_takes_true_or_false_only(api_client, value):
    response = api_client.get("/api/v1/mailings/", {"launched": value})

    assert response.status_code == 400
    assert list(response.json()) == ["launched"]


@pytest.mark.parametrize("value, launched", [("true", True), ("false", False), ("1", True), ("0", False)])
def test_launched_filters_both_ways(api_client, value, launched):
    MailingFactory(launched_at=datetime(2030, 1, 1, tzinfo=UTC))
    MailingFactory(launched_at=None)

    response = api_client.get("/api/v1/mailings/", {"launched": value})

    assert [row["launched_at"] is not None for row in response.json()["results"]] == [launched]


@pytest.mark.parametrize("ordering", ["", "phone,", "nonsense", "-created_at,tag"])
def test_ordering_by_an_unknown_field_is_a_400(api_client, ordering):
    response = api_client.get("/api/v1/messages/", {"ordering": ordering})

    assert response.status_code == 400
    assert list(response.json()) == ["ordering"]


def test_ordering_by_known_fields_works(api_client):
    first, second = ClientFactory(phone="79160000002"), ClientFactory(phone="79160000001")

    response = api_client.get("/api/v1/clients/", {"ordering": "phone,-id"})

    assert [row["id"] for row in response.json()["results"]] == [second.pk, first.pk]


def test_an_unknown_route_under_the_api_is_a_json_404(api_client):
    response = api_client.get("/api/v1/nothing-here/")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_an_unknown_route_elsewhere_stays_an_html_404(api_client):
    response = api_client.get("/nothing-here/")

    assert response.status_code == 404
    assert "html" in response["Content-Type"]


def test_an_unexpected_error_under_the_api_is_a_json_500(operator):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(operator)

    with mock.patch("mailings.views.attach_message_counts", side_effect=RuntimeError("boom")):
        response = client.get("/api/v1/mailings/statistics/")

    assert response.status_code == 500
    assert response.json() == {"detail": "Server error."}


def test_the_api_root_lists_the_collections(api_client):
    response = api_client.get("/api/v1/")

    assert response.status_code == 200
    assert response.json() == {
        "clients": "http://testserver/api/v1/clients/",
        "mailings": "http://testserver/api/v1/mailings/",
        "statistics": "http://testserver/api/v1/mailings/statistics/",
        "messages": "http://testserver/api/v1/messages/",
        "providers": "http://testserver/api/v1/providers/",
        "optouts": "http://testserver/api/v1/optouts/",
        "schema": "http://testserver/api/v1/schema/",
        "docs": "http://testserver/docs/",
    }


def test_the_api_root_needs_credentials(anonymous_client):
    assert anonymous_client.get("/api/v1/").status_code == 401


@pytest.mark.parametrize(
    "name", ["localtime", "Factory", "posixrules", "EST5EDT", "US/Eastern", "Etc/GMT+3", "GB"]
)
def test_timezones_that_are_not_places_are_refused(api_client, name):
    response = api_client.post("/api/v1/clients/", {"phone": "79161234567", "timezone": name})

    assert response.status_code == 400
    assert list(response.json()) == ["timezone"]


def test_timezone_names_are_read_from_zoneinfo_once():
    client_timezones.cache_clear()
    with mock.patch("zoneinfo.available_timezones", return_value={"Europe/Moscow", "UTC", "EST5EDT"}) as scan:
        assert client_timezones() == ("Europe/Moscow", "UTC")
        assert client_timezones() == ("Europe/Moscow", "UTC")
    client_timezones.cache_clear()

    assert scan.call_count == 1
