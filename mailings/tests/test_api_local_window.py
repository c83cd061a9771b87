"""The local-time window through the API: validation, the never-opening window, freezing at launch."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("mailing-list")
# 09:00-17:00 UTC: Moscow 12:00-20:00, Tokyo 18:00-02:00, New York 04:00-12:00.
START = datetime(2100, 1, 1, 9, 0, tzinfo=UTC)
END = START + timedelta(hours=8)


def body(**changes) -> dict:
    return {"start_at": START.isoformat(), "end_at": END.isoformat(), "text": "Sale today", **changes}


def detail_url(mailing: Mailing) -> str:
    return reverse("mailing-detail", args=[mailing.pk])


def test_a_window_is_stored_and_given_back(api_client):
    response = api_client.post(LIST_URL, body(local_window_start="09:00", local_window_end="21:00"))

    assert response.status_code == 201, response.data
    assert (response.data["local_window_start"], response.data["local_window_end"]) == (
        "09:00:00",
        "21:00:00",
    )
    mailing = Mailing.objects.get()
    assert str(mailing.local_window.start) == "09:00:00" and not mailing.local_window.crosses_midnight


def test_a_window_crossing_midnight_is_accepted(api_client):
    ClientFactory(timezone="Europe/Moscow")

    response = api_client.post(LIST_URL, body(local_window_start="19:00", local_window_end="06:30"))

    assert response.status_code == 201, response.data
    assert Mailing.objects.get().local_window.crosses_midnight


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"local_window_start": "09:00"}, "local_window_end"),
        ({"local_window_end": "21:00"}, "local_window_start"),
    ],
)
def test_one_end_of_the_window_alone_is_a_field_error(api_client, given, missing):
    response = api_client.post(LIST_URL, body(**given))

    assert response.status_code == 400
    assert list(response.data) == [missing]
    assert not Mailing.objects.exists()


def test_a_window_starting_where_it_ends_is_a_field_error(api_client):
    response = api_client.post(LIST_URL, body(local_window_start="10:00", local_window_end="10:00:00"))

    assert response.status_code == 400
    assert response.data == {"local_window_end": ["Must differ from local_window_start."]}


@pytest.mark.parametrize("value", ["25:00", "9am", "", 900, "09:00+03:00x", "09:00+03:00", "09:00:00Z"])
def test_a_malformed_time_is_a_field_error(api_client, value):
    response = api_client.post(LIST_URL, body(local_window_start=value, local_window_end="21:00"))

    assert response.status_code == 400
    assert "local_window_start" in response.data


def test_a_window_that_never_opens_for_any_client_before_the_end_is_refused_with_the_reason(api_client):
    ClientFactory(timezone="Europe/Moscow")  # 12:00-20:00 local during the mailing
    ClientFactory(timezone="Asia/Tokyo")  # 18:00-02:00

    response = api_client.post(LIST_URL, body(local_window_start="03:00", local_window_end="06:00"))

    assert response.status_code == 400
    [reason] = response.data["local_window_start"]
    assert "never opens between start_at and end_at" in reason
    assert "Asia/Tokyo, Europe/Moscow" in reason
    assert not Mailing.objects.exists()


def test_a_window_that_opens_for_some_zones_only_is_accepted(api_client):
    ClientFactory(timezone="Europe/Moscow")  # never 03:00-06:00 during the mailing: those expire
    ClientFactory(timezone="America/New_York")  # 04:00-12:00: opens at once

    response = api_client.post(LIST_URL, body(local_window_start="03:00", local_window_end="06:00"))

    assert response.status_code == 201, response.data


def test_the_never_opening_check_looks_at_the_filtered_audience_only(api_client):
    ClientFactory(timezone="America/New_York", tag="us")
    ClientFactory(timezone="Europe/Moscow", tag="ru")

    refused = api_client.post(
        LIST_URL, body(filter_tag="ru", local_window_start="03:00", local_window_end="06:00")
    )
    accepted = api_client.post(
        LIST_URL, body(filter_tag="us", local_window_start="03:00", local_window_end="06:00")
    )

    assert (refused.status_code, accepted.status_code) == (400, 201)


def test_a_window_is_accepted_when_nobody_matches_yet(api_client):
    response = api_client.post(LIST_URL, body(local_window_start="03:00", local_window_end="06:00"))

    assert response.status_code == 201, response.data


def test_patch_completes_or_removes_the_window_of_an_unlaunched_mailing(api_client):
    mailing = MailingFactory(local_window_start="09:00", local_window_end="21:00")

    half = api_client.patch(detail_url(mailing), {"local_window_end": None})
    removed = api_client.patch(detail_url(mailing), {"local_window_start": None, "local_window_end": None})

    assert half.status_code == 400 and list(half.data) == ["local_window_end"]
    assert removed.status_code == 200, removed.data
    mailing.refresh_from_db()
    assert mailing.local_window is None


def test_patch_checks_the_window_against_the_new_end(api_client):
    ClientFactory(timezone="Europe/Moscow")
    mailing = MailingFactory(start_at=START, end_at=END, local_window_start="14:00", local_window_end="15:00")

    response = api_client.patch(detail_url(mailing), {"end_at": (START + timedelta(hours=2)).isoformat()})

    assert response.status_code == 400
    assert "never opens" in response.data["local_window_start"][0]


def test_a_launched_mailing_refuses_a_window_change_with_409(api_client):
    mailing = MailingFactory(launched_at=timezone.now(), local_window_start="09:00", local_window_end="21:00")

    response = api_client.patch(detail_url(mailing), {"local_window_start": "10:00"})

    assert response.status_code == 409
    assert "local_window_start" in response.data["detail"]


def test_the_database_refuses_half_a_window():
    with pytest.raises(IntegrityError):
        MailingFactory(local_window_start="09:00")
