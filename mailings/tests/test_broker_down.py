"""The broker unreachable when a request commits: the rows stand and the API answers as usual, never
500; the failure is logged and counted, and what the task would have done is picked up otherwise
(beat's scanner launches a due mailing; a test send fails, to be tried again)."""

import logging
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from clients.tests.factories import ClientFactory
from mailings.models import Mailing, MailingState, TestSend
from mailings.tasks import LAUNCH_MAILING

from .factories import mailing_in

# Committed for real: a request's on-commit callbacks run inside it, as they do in production.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("broker_down")]


def enqueue_failures(task: str) -> float:
    return REGISTRY.get_sample_value("sms_enqueue_failures_total", {"task": task}) or 0.0


def window(*, starts_in: timedelta) -> dict:
    start = timezone.now() + starts_in
    return {"start_at": start.isoformat(), "end_at": (start + timedelta(hours=1)).isoformat()}


def test_a_mailing_starting_now_is_created_and_left_to_the_scanner(api_client, caplog):
    ClientFactory()
    before = enqueue_failures(LAUNCH_MAILING)

    with caplog.at_level(logging.ERROR, logger="ops.enqueue"):
        response = api_client.post(
            "/api/v1/mailings/", {"text": "Now", **window(starts_in=-timedelta(seconds=1))}
        )

    assert response.status_code == 201, response.content
    mailing = Mailing.objects.get(pk=response.data["id"])
    assert list(Mailing.objects.due_for_launch(timezone.now())) == [mailing]
    assert enqueue_failures(LAUNCH_MAILING) == before + 1
    [line] = caplog.records
    assert f"mailing {mailing.pk} is launched by beat's scanner" in line.getMessage()


def test_a_resend_starting_now_is_created_and_left_to_the_scanner(api_client):
    ClientFactory()
    finished = mailing_in(MailingState.FINISHED, failed=1)

    response = api_client.post(f"/api/v1/mailings/{finished.pk}/resend/", window(starts_in=timedelta(0)))

    assert response.status_code == 201, response.content
    assert Mailing.objects.get(pk=response.data["id"]).resend_of == finished


def test_a_test_send_is_accepted_and_ends_failed_with_the_reason(api_client):
    mailing = mailing_in(MailingState.SCHEDULED)

    response = api_client.post(f"/api/v1/mailings/{mailing.pk}/test/", {"client_ids": [ClientFactory().pk]})

    assert response.status_code == 202, response.content
    send = TestSend.objects.get(pk=response.data[0]["id"])
    assert send.status == TestSend.Status.FAILED
    assert "task queue did not answer" in send.detail


def test_an_opt_out_is_stored_and_left_to_the_sweeper(api_client, caplog):
    from clients.models import OptOut
    from clients.tasks import END_OPTED_OUT

    before = enqueue_failures(END_OPTED_OUT)

    with caplog.at_level(logging.ERROR, logger="ops.enqueue"):
        response = api_client.post("/api/v1/optouts/", {"phone": "79160000001"})

    assert response.status_code == 201, response.content
    assert OptOut.objects.filter(phone="79160000001").exists()
    assert enqueue_failures(END_OPTED_OUT) == before + 1
    assert "the message sweeper ends their pending messages" in caplog.text
