"""Quiet hours by default (DEFAULT_LOCAL_WINDOW), sending at any hour on purpose, and the permission
to exempt a mailing from the frequency cap."""

from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.roles import EXEMPT_FROM_CAP
from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

LIST_URL = reverse("mailing-list")
START = datetime(2100, 1, 1, 9, 0, tzinfo=UTC)  # Moscow 12:00-20:00 during the mailing


@pytest.fixture(autouse=True)
def quiet_hours(settings):
    settings.DEFAULT_LOCAL_WINDOW = "09:00-21:00"


def body(hours: int = 8, **changes) -> dict:
    end = START + timedelta(hours=hours)
    return {"start_at": START.isoformat(), "end_at": end.isoformat(), "text": "Sale today", **changes}


def window(mailing: Mailing) -> tuple:
    return mailing.local_window_start, mailing.local_window_end


def test_a_mailing_that_sets_no_window_gets_the_default_one(api_client):
    response = api_client.post(LIST_URL, body())

    assert response.status_code == 201, response.data
    assert (response.data["local_window_start"], response.data["local_window_end"]) == (
        "09:00:00",
        "21:00:00",
    )
    assert response.data["send_at_any_hour"] is False
    assert window(Mailing.objects.get()) == (time(9), time(21))


def test_a_mailing_keeps_its_own_window(api_client):
    response = api_client.post(LIST_URL, body(local_window_start="10:00", local_window_end="12:00"))

    assert response.status_code == 201, response.data
    assert window(Mailing.objects.get()) == (time(10), time(12))


def test_a_mailing_may_say_it_sends_at_any_hour(api_client):
    response = api_client.post(LIST_URL, body(send_at_any_hour=True))

    assert response.status_code == 201, response.data
    assert response.data["send_at_any_hour"] is True
    assert window(Mailing.objects.get()) == (None, None)


def test_any_hour_and_a_window_at_once_is_a_field_error(api_client):
    response = api_client.post(
        LIST_URL, body(send_at_any_hour=True, local_window_start="10:00", local_window_end="12:00")
    )

    assert response.status_code == 400
    assert list(response.data) == ["send_at_any_hour"]
    assert not Mailing.objects.exists()


def test_an_edit_may_switch_a_mailing_to_any_hour_and_back_to_the_default(api_client):
    mailing = MailingFactory(
        start_at=START,
        end_at=START + timedelta(hours=8),
        local_window_start="09:00",
        local_window_end="21:00",
    )
    url = reverse("mailing-detail", args=[mailing.pk])

    assert api_client.patch(url, {"send_at_any_hour": True}).status_code == 200
    mailing.refresh_from_db()
    assert window(mailing) == (None, None)
    assert api_client.patch(url, {"text": "Other text"}).status_code == 200  # no window stays none
    assert api_client.patch(url, {"send_at_any_hour": False}).status_code == 200
    mailing.refresh_from_db()
    assert window(mailing) == (time(9), time(21))


def test_a_default_window_that_never_opens_names_the_default_and_the_way_out(api_client):
    ClientFactory(timezone="Europe/Moscow")  # 12:00-13:00 local: open
    ClientFactory(timezone="Asia/Tokyo")
    late = {"start_at": datetime(2100, 1, 1, 19, 0, tzinfo=UTC).isoformat()}  # Moscow 22:00, Tokyo 04:00

    response = api_client.post(
        LIST_URL, body(**late, end_at=datetime(2100, 1, 1, 21, 0, tzinfo=UTC).isoformat())
    )

    assert response.status_code == 400
    [reason] = response.data["send_at_any_hour"]
    assert "DEFAULT_LOCAL_WINDOW" in reason and "never opens" in reason


def test_no_default_leaves_a_mailing_without_a_window(api_client, settings):
    settings.DEFAULT_LOCAL_WINDOW = ""

    assert api_client.post(LIST_URL, body()).status_code == 201
    assert window(Mailing.objects.get()) == (None, None)


def test_exempting_a_mailing_from_the_cap_needs_the_permission(api_client, operator):
    refused = api_client.post(LIST_URL, body(cap_exempt=True))

    assert refused.status_code == 403
    assert "cap_exempt" in refused.data["detail"]
    operator.user_permissions.add(Permission.objects.get(codename=EXEMPT_FROM_CAP))
    allowed = api_client.post(LIST_URL, body(cap_exempt=True))  # the token's user is read per request
    assert allowed.status_code == 201, allowed.data
    assert Mailing.objects.get().cap_exempt is True


def test_an_operator_without_the_permission_may_leave_cap_exempt_as_it_is(api_client):
    response = api_client.post(LIST_URL, body(cap_exempt=False))

    assert response.status_code == 201, response.data
