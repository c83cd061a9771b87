"""Resend: a new mailing, in its own window, to the clients whose messages failed or expired."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import Mailing, MailingState
from mailings.tests.factories import mailing_in
from messages_app import launch
from messages_app.models import Message

pytestmark = pytest.mark.django_db
Status = Message.Status


def window(**changes) -> dict:
    start = timezone.now() + timedelta(days=1)
    return {"start_at": start.isoformat(), "end_at": (start + timedelta(hours=2)).isoformat(), **changes}


def resend(api_client, mailing, body):
    return api_client.post(reverse("mailing-resend", args=[mailing.pk]), body)


def test_resend_goes_to_the_failed_and_expired_clients_only(api_client):
    source = mailing_in(MailingState.FINISHED, sent=2, failed=2, expired=3)
    wanted = set(
        Message.objects.filter(mailing=source, status__in=[Status.FAILED, Status.EXPIRED]).values_list(
            "client_id", flat=True
        )
    )

    response = resend(api_client, source, window())

    assert response.status_code == 201, response.data
    assert response.data["resend_of"] == source.pk
    assert response.data["text"] == source.text
    assert response.data["audience"] == f"clients whose messages of mailing {source.pk} failed or expired"
    copy = Mailing.objects.get(pk=response.data["id"])
    assert set(copy.recipients().values_list("id", flat=True)) == wanted
    # Launched in its own window: the fan-out reaches exactly those clients.
    Mailing.objects.filter(pk=copy.pk).update(start_at=timezone.now())
    launch.mailing_launch(mailing_id=copy.pk)
    assert set(Message.objects.filter(mailing=copy).values_list("client_id", flat=True)) == wanted
    assert Mailing.objects.get(pk=copy.pk).audience_size == 5


def test_resend_can_take_another_text(api_client):
    source = mailing_in(MailingState.CANCELLED, expired=1)

    response = resend(api_client, source, window(text="Second try"))

    assert response.data["text"] == "Second try"


@pytest.mark.parametrize("state", [MailingState.RUNNING, MailingState.PAUSED, MailingState.SCHEDULED])
def test_resend_before_the_mailing_is_over_is_a_conflict(api_client, state):
    response = resend(api_client, mailing_in(state, failed=1, pending=1), window())

    assert response.status_code == 409
    assert f"is {state}" in response.data["detail"]


def test_resend_with_nothing_failed_is_a_conflict(api_client):
    response = resend(api_client, mailing_in(MailingState.FINISHED, sent=3), window())

    assert response.status_code == 409
    assert not Mailing.objects.filter(resend_of__isnull=False).exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"start_at", "end_at"}),
        (window(end_at=(timezone.now() - timedelta(days=1)).isoformat()), {"end_at"}),
        (window(filter_tag="vip"), {"filter_tag"}),
        (window(text=""), {"text"}),
    ],
)
def test_resend_answers_bad_input_with_field_errors(api_client, body, fields):
    response = resend(api_client, mailing_in(MailingState.FINISHED, failed=1), body)

    assert response.status_code == 400
    assert set(response.data) == fields


def test_a_resend_whose_source_was_deleted_reaches_nobody(api_client):
    source = mailing_in(MailingState.FINISHED, failed=2)
    copy_id = resend(api_client, source, window()).data["id"]

    api_client.delete(reverse("mailing-detail", args=[source.pk]) + "?with_history=true")

    assert not Mailing.objects.get(pk=copy_id).recipients().exists()
