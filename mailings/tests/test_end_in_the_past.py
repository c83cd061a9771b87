"""A running or paused mailing's end moves earlier only to a moment at least END_MIN_LEAD ahead:
an end in the past would expire every unsent message at once, for good. Stopping now is cancel."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import Mailing, MailingState
from mailings.services import END_MIN_LEAD
from mailings.tests.factories import mailing_in
from messages_app.models import Message, MessageStatus

from .test_admin import form_data

pytestmark = pytest.mark.django_db

TOO_SOON = {
    "an hour ago": -timedelta(hours=1),
    "now": timedelta(0),
    "within the margin": END_MIN_LEAD - timedelta(seconds=5),
}


def detail_url(mailing: Mailing) -> str:
    return reverse("mailing-detail", args=[mailing.pk])


@pytest.mark.parametrize("state", [MailingState.RUNNING, MailingState.PAUSED])
@pytest.mark.parametrize("from_now", TOO_SOON.values(), ids=TOO_SOON.keys())
def test_an_end_moved_into_the_past_or_too_near_is_a_400_pointing_at_cancel(api_client, state, from_now):
    mailing = mailing_in(state, pending=3)

    response = api_client.patch(detail_url(mailing), {"end_at": (timezone.now() + from_now).isoformat()})

    assert response.status_code == 400
    assert list(response.data) == ["end_at"]
    assert f"/api/v1/mailings/{mailing.pk}/cancel/" in response.data["end_at"][0]
    assert Mailing.objects.get(pk=mailing.pk).end_at == mailing.end_at
    assert Message.objects.filter(mailing=mailing, status=MessageStatus.PENDING).count() == 3


def test_a_running_mailings_end_can_move_earlier_beyond_the_margin(api_client):
    mailing = mailing_in(MailingState.RUNNING)
    new_end = timezone.now() + END_MIN_LEAD + timedelta(minutes=1)

    response = api_client.patch(detail_url(mailing), {"end_at": new_end.isoformat()})

    assert response.status_code == 200, response.data
    assert Mailing.objects.get(pk=mailing.pk).end_at == new_end


def test_an_end_already_near_may_still_move_later(api_client):
    mailing = mailing_in(MailingState.RUNNING)
    Mailing.objects.filter(pk=mailing.pk).update(end_at=timezone.now() + timedelta(seconds=10))
    new_end = timezone.now() + timedelta(seconds=30)

    response = api_client.patch(detail_url(mailing), {"end_at": new_end.isoformat()})

    assert response.status_code == 200, response.data


def test_the_admin_form_refuses_an_end_in_the_past_with_the_same_reason(admin_client):
    mailing = mailing_in(MailingState.RUNNING)
    url = reverse("admin:mailings_mailing_change", args=[mailing.pk])

    response = admin_client.post(url, form_data(end_at=timezone.now() - timedelta(hours=1)))

    assert response.status_code == 200  # the form again, with its error
    [error] = response.context["adminform"].form.errors["end_at"]
    assert "cancel it" in error
    assert Mailing.objects.get(pk=mailing.pk).end_at == mailing.end_at
