"""End to end, what a message says and what comes back as a file: personal fields rendered for each
client reach the provider, a draft sends nothing until launched, a finished mailing's CSV export.

The API, a real Celery worker with beat, Redis, the database and the fake provider over HTTP.
"""

import csv
import io
import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clients.models import Client
from harness.waiting import wait_until
from messages_app.models import Message

from .e2e import all_final, counts_by_status

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def create_mailing(api_client, text: str, **fields) -> dict:
    now = timezone.now()
    body = {"start_at": now - timedelta(seconds=1), "end_at": now + timedelta(minutes=10), "text": text}
    response = api_client.post(reverse("mailing-list"), {**body, **fields}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_each_client_gets_the_text_with_its_own_name(worker, fake_provider_process, api_client):
    anna = Client.objects.create(phone="79160000001", attributes={"name": "Анна"}).pk
    john = Client.objects.create(phone="79160000002", attributes={"name": "John"}).pk
    nameless = Client.objects.create(phone="79160000003").pk

    mailing = create_mailing(api_client, "Hello, {name|customer}! {{sale}} today")

    wait_until(lambda: all_final(mailing["id"], 3), timeout=30, message="every message to be final")
    assert counts_by_status(mailing["id"]) == {"sent": 3}
    by_client = dict(Message.objects.filter(mailing_id=mailing["id"]).values_list("client_id", "id"))
    texts = fake_provider_process.control.accepted_texts()
    assert {client: texts[by_client[client]] for client in (anna, john, nameless)} == {
        anna: "Hello, Анна! {sale} today",
        john: "Hello, John! {sale} today",
        nameless: "Hello, customer! {sale} today",
    }


def test_a_draft_sends_nothing_until_launched(worker, fake_provider_process, api_client):
    Client.objects.bulk_create(Client(phone=f"7916000{n:04d}", operator_code="916") for n in range(5))
    draft = create_mailing(api_client, "Hi {name|there}", draft=True)

    time.sleep(3)  # beat's scanner runs every second: it would have launched an ordinary mailing
    assert not Message.objects.filter(mailing_id=draft["id"]).exists()

    launched = api_client.post(reverse("mailing-launch", args=[draft["id"]]))

    assert launched.status_code == 200, launched.content
    wait_until(lambda: all_final(draft["id"], 5), timeout=30, message="the launched draft to be sent")
    assert counts_by_status(draft["id"]) == {"sent": 5}
    assert set(fake_provider_process.control.accepted_texts().values()) == {"Hi there"}


def test_a_finished_mailing_exports_its_messages(worker, fake_provider_process, api_client, viewer_client):
    Client.objects.bulk_create(Client(phone=f"7925000{n:04d}", operator_code="925") for n in range(4))
    mailing = create_mailing(api_client, "Autumn sale")
    wait_until(lambda: all_final(mailing["id"], 4), timeout=30, message="every message to be final")
    wait_until(
        lambda: api_client.get(reverse("mailing-detail", args=[mailing["id"]])).json()["state"] == "finished",
        timeout=10,
        message="the mailing to be finished",
    )

    as_operator = api_client.get(reverse("mailing-export", args=[mailing["id"]]))
    as_viewer = viewer_client.get(reverse("mailing-export", args=[mailing["id"]]))

    assert as_operator["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(as_operator.streaming_content).decode())))
    assert sorted(row["phone"] for row in rows) == [f"7925000{n:04d}" for n in range(4)]
    assert {(row["status"], row["attempts"], bool(row["sent_at"])) for row in rows} == {("sent", "1", True)}
    masked = list(csv.DictReader(io.StringIO(b"".join(as_viewer.streaming_content).decode())))
    assert sorted(row["phone"] for row in masked) == [f"7925*****0{n}" for n in range(4)]
