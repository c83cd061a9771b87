"""Operators' actions through the API: pause, resume, cancel, delete, and the state each leads to."""

import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from mailings.models import Mailing, MailingState
from mailings.tests.factories import MailingFactory, mailing_in
from messages_app.models import Message
from messages_app.selectors import mailings_to_send
from messages_app.services import CANCELLED_ERROR
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db
Status = Message.Status


def act(api_client, mailing: Mailing, action: str):
    return api_client.post(reverse(f"mailing-{action}", args=[mailing.pk]))


def state_of(mailing: Mailing) -> str:
    return Mailing.objects.get(pk=mailing.pk).state


@pytest.mark.parametrize("state", list(MailingState))
def test_the_api_shows_each_state(api_client, state):
    mailing = mailing_in(state)

    response = api_client.get(reverse("mailing-detail", args=[mailing.pk]))

    assert response.data["state"] == state


def test_a_launched_mailing_with_nothing_left_to_send_is_finished():
    assert mailing_in(MailingState.RUNNING, sent=2, failed=1).state == MailingState.FINISHED
    assert mailing_in(MailingState.RUNNING, sent=2, sending=1).state == MailingState.RUNNING


def test_pause_holds_a_running_mailing_and_no_sender_works_on_it(api_client, operator, caplog):
    mailing = mailing_in(MailingState.RUNNING, pending=3)

    with caplog.at_level(logging.INFO, logger="ops.audit"):
        response = act(api_client, mailing, "pause")

    assert response.status_code == 200, response.data
    assert response.data["state"] == MailingState.PAUSED
    assert response.data["paused_at"] is not None
    assert mailing.pk not in [row[0] for row in mailings_to_send(now=timezone.now())]
    assert Message.objects.filter(mailing=mailing, status=Status.PENDING).count() == 3
    assert f"mailing={mailing.pk} paused by {operator.username}" in caplog.text


def test_a_scheduled_mailing_can_be_paused(api_client):
    response = act(api_client, mailing_in(MailingState.SCHEDULED), "pause")

    assert response.status_code == 200
    assert response.data["state"] == MailingState.PAUSED


@pytest.mark.parametrize("state", [MailingState.PAUSED, MailingState.CANCELLED, MailingState.FINISHED])
def test_pause_in_another_state_is_a_conflict_naming_it(api_client, state):
    mailing = mailing_in(state)

    response = act(api_client, mailing, "pause")

    assert response.status_code == 409
    assert f"is {state}" in response.data["detail"]


def test_resume_makes_a_paused_mailing_sendable_again(api_client, operator, caplog):
    mailing = mailing_in(MailingState.PAUSED, pending=2)

    with caplog.at_level(logging.INFO, logger="ops.audit"):
        response = act(api_client, mailing, "resume")

    assert response.status_code == 200, response.data
    assert response.data["state"] == MailingState.RUNNING
    assert Mailing.objects.sendable(timezone.now()).filter(pk=mailing.pk).exists()
    assert mailing.pk in [row[0] for row in mailings_to_send(now=timezone.now())]
    assert f"mailing={mailing.pk} resumed by {operator.username}" in caplog.text


def test_resuming_a_paused_scheduled_mailing_sends_nothing_before_its_start(api_client):
    mailing = mailing_in(MailingState.SCHEDULED)
    act(api_client, mailing, "pause")

    response = act(api_client, mailing, "resume")

    assert response.data["state"] == MailingState.SCHEDULED
    assert not Mailing.objects.sendable(timezone.now()).filter(pk=mailing.pk).exists()


def test_a_paused_mailing_whose_end_passed_is_finished_and_cannot_resume(api_client):
    mailing = mailing_in(MailingState.PAUSED)
    Mailing.objects.filter(pk=mailing.pk).update(end_at=timezone.now() - timedelta(seconds=1))

    response = act(api_client, mailing, "resume")

    assert response.status_code == 409
    assert "is finished" in response.data["detail"]
    assert state_of(mailing) == MailingState.FINISHED


@pytest.mark.parametrize("state", [MailingState.RUNNING, MailingState.SCHEDULED, MailingState.CANCELLED])
def test_resume_when_not_paused_is_a_conflict(api_client, state):
    response = act(api_client, mailing_in(state), "resume")

    assert response.status_code == 409
    assert f"is {state}" in response.data["detail"]


@pytest.mark.parametrize("state", [MailingState.RUNNING, MailingState.PAUSED])
def test_cancel_expires_what_is_unsent_and_keeps_what_was_sent(api_client, operator, caplog, state):
    mailing = mailing_in(state, pending=3, sent=2)

    with caplog.at_level(logging.INFO, logger="ops.audit"):
        response = act(api_client, mailing, "cancel")

    assert response.status_code == 200, response.data
    assert response.data["state"] == MailingState.CANCELLED
    messages = Message.objects.filter(mailing=mailing)
    assert messages.filter(status=Status.SENT).count() == 2
    assert set(messages.exclude(status=Status.SENT).values_list("status", "last_error")) == {
        (Status.EXPIRED, CANCELLED_ERROR)
    }
    assert f"mailing={mailing.pk} cancelled (3 unsent messages expired) by {operator.username}" in caplog.text


def test_a_cancelled_scheduled_mailing_is_never_launched(api_client):
    mailing = mailing_in(MailingState.SCHEDULED)
    act(api_client, mailing, "cancel")

    later = mailing.start_at + timedelta(minutes=1)
    assert not Mailing.objects.due_for_launch(later).filter(pk=mailing.pk).exists()


@pytest.mark.parametrize("state", [MailingState.CANCELLED, MailingState.FINISHED])
def test_cancel_is_final(api_client, state):
    mailing = mailing_in(state)

    assert act(api_client, mailing, "cancel").status_code == 409
    assert act(api_client, mailing, "resume").status_code == 409
    assert state_of(mailing) == state


def test_actions_on_a_missing_mailing_are_404(api_client):
    assert api_client.post(reverse("mailing-pause", args=[999999])).status_code == 404


@pytest.mark.parametrize("state", list(MailingState))
def test_list_filters_by_state(api_client, state):
    wanted = {mailing_in(state).pk}
    for other in MailingState:
        if other != state:
            mailing_in(other)

    response = api_client.get(reverse("mailing-list"), {"state": state})

    assert response.status_code == 200
    assert {row["id"] for row in response.data["results"]} == wanted


# --- Delete: one rule for the API and the admin ---------------------------------------------------


def delete(api_client, mailing: Mailing, **query):
    url = reverse("mailing-detail", args=[mailing.pk])
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return api_client.delete(url)


def test_a_mailing_never_launched_can_be_deleted(api_client):
    mailing = MailingFactory()

    assert delete(api_client, mailing).status_code == 204
    assert not Mailing.objects.filter(pk=mailing.pk).exists()


@pytest.mark.parametrize("state", [MailingState.RUNNING, MailingState.PAUSED])
def test_a_launched_mailing_still_sending_cannot_be_deleted(api_client, state):
    mailing = mailing_in(state)

    response = delete(api_client, mailing, with_history="true")

    assert response.status_code == 409
    assert f"is {state}" in response.data["detail"]
    assert Mailing.objects.filter(pk=mailing.pk).exists()


@pytest.mark.parametrize("state", [MailingState.FINISHED, MailingState.CANCELLED])
def test_a_finished_or_cancelled_mailing_goes_with_its_history_only_when_asked(api_client, state):
    mailing = mailing_in(state, sent=2)
    other = MessageFactory()

    refused = delete(api_client, mailing)
    deleted = delete(api_client, mailing, with_history="true")

    assert refused.status_code == 409
    assert "with_history" in refused.data["detail"]
    assert deleted.status_code == 204
    assert list(Message.objects.all()) == [other]


def test_delete_with_a_history_flag_that_is_not_a_boolean_is_400(api_client):
    response = delete(api_client, mailing_in(MailingState.FINISHED), with_history="maybe")

    assert response.status_code == 400
    assert "with_history" in response.data
