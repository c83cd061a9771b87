"""Drafts: saved, edited, previewed and test-sent freely, never launched until an operator does."""

import logging
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings import tasks
from mailings.models import Mailing, MailingState
from messages_app import launch
from messages_app.models import Message

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued_launches(monkeypatch):
    launched = []
    monkeypatch.setattr(
        tasks.current_app, "send_task", lambda name, args=(), **options: launched.extend(args)
    )
    return launched


def create_draft(api_client, **fields) -> dict:
    now = timezone.now()
    body = {
        "start_at": now - timedelta(minutes=1),
        "end_at": now + timedelta(hours=1),
        "text": "Hi {name|you}",
    }
    response = api_client.post(reverse("mailing-list"), {**body, "draft": True, **fields}, format="json")
    assert response.status_code == 201, response.data
    return response.data


def test_a_draft_inside_its_window_is_not_launched_by_the_hook_nor_the_scanner(
    api_client, enqueued_launches, django_capture_on_commit_callbacks
):
    ClientFactory()
    with django_capture_on_commit_callbacks(execute=True):
        draft = create_draft(api_client)
    tasks.launch_due_mailings()

    assert draft["state"] == MailingState.DRAFT
    assert enqueued_launches == []
    assert launch.mailing_launch(mailing_id=draft["id"]) is False  # a stray launch task does nothing
    assert not Message.objects.exists()


def test_a_draft_is_edited_freely_and_cannot_be_undrafted_by_an_edit(api_client):
    draft = create_draft(api_client)
    url = reverse("mailing-detail", args=[draft["id"]])

    edited = api_client.patch(url, {"text": "Hello, {name|customer}", "filter_tag": "vip"}, format="json")
    undrafted = api_client.patch(url, {"draft": False}, format="json")

    assert edited.status_code == 200, edited.data
    assert edited.data["text"] == "Hello, {name|customer}" and edited.data["draft"] is True
    assert undrafted.status_code == 400
    assert "launch a draft with POST" in undrafted.data["draft"][0]


def test_launching_a_draft_inside_its_window_starts_it_at_once(
    api_client, operator, enqueued_launches, django_capture_on_commit_callbacks, caplog
):
    draft = create_draft(api_client)

    with caplog.at_level(logging.INFO, logger="ops.audit"), django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(reverse("mailing-launch", args=[draft["id"]]))

    assert response.status_code == 200, response.data
    assert response.data["draft"] is False and response.data["state"] == MailingState.RUNNING
    assert enqueued_launches == [draft["id"]]
    assert f"mailing={draft['id']} launched from draft by {operator.username}" in caplog.text


def test_a_launched_draft_with_a_later_start_waits_for_the_scanner(api_client, enqueued_launches):
    now = timezone.now()
    draft = create_draft(api_client, start_at=now + timedelta(hours=1), end_at=now + timedelta(hours=2))

    response = api_client.post(reverse("mailing-launch", args=[draft["id"]]))

    assert response.data["state"] == MailingState.SCHEDULED
    Mailing.objects.filter(pk=draft["id"]).update(start_at=now - timedelta(seconds=1))
    tasks.launch_due_mailings()
    assert enqueued_launches == [draft["id"]]


def test_launching_a_draft_whose_window_has_passed_is_a_409(api_client, enqueued_launches):
    draft = create_draft(api_client)
    Mailing.objects.filter(pk=draft["id"]).update(
        start_at=timezone.now() - timedelta(hours=2), end_at=timezone.now() - timedelta(hours=1)
    )

    response = api_client.post(reverse("mailing-launch", args=[draft["id"]]))

    assert response.status_code == 409
    assert "it would send nothing" in response.data["detail"]
    assert Mailing.objects.get(pk=draft["id"]).draft
    assert enqueued_launches == []


def test_launching_what_is_not_a_draft_is_a_409(api_client):
    now = timezone.now()
    response = api_client.post(
        reverse("mailing-list"),
        {"start_at": now + timedelta(hours=1), "end_at": now + timedelta(hours=2), "text": "Hi"},
        format="json",
    )

    launched = api_client.post(reverse("mailing-launch", args=[response.data["id"]]))

    assert launched.status_code == 409
    assert "is scheduled: it cannot be launched; only draft ones can" in launched.data["detail"]


def test_a_viewer_cannot_launch_a_draft(api_client, viewer_client):
    draft = create_draft(api_client)

    assert viewer_client.post(reverse("mailing-launch", args=[draft["id"]])).status_code == 403
    assert Mailing.objects.get(pk=draft["id"]).draft
