"""POSTs with an Idempotency-Key are done once per user and key: a retry replays the first answer;
the key with another request is 422; while the first runs, 409; keys expire and are purged."""

import logging
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from accounts.roles import OPERATORS
from clients.models import Client
from clients.tests.factories import ClientFactory
from conftest import token_client, user_with_role
from mailings.models import Mailing, MailingState, TestSend
from mailings.tests.factories import MailingFactory, mailing_in
from ops.idempotency import IN_PROGRESS_LEASE, idempotency_lifetime
from ops.models import IdempotencyKey
from ops.tasks import purge_idempotency_keys

pytestmark = pytest.mark.django_db

KEY = "6f1c1a52-7a34-4c5e-9a38-1f0b3b7f0c11"


def post(api_client, url: str, body=None, *, key: str = KEY, **options):
    return api_client.post(url, body, HTTP_IDEMPOTENCY_KEY=key, **options)


def window() -> dict:
    start = timezone.now() + timedelta(days=1)
    return {"start_at": start.isoformat(), "end_at": (start + timedelta(hours=1)).isoformat()}


def test_a_retried_create_replays_the_first_answer_and_creates_nothing_more(api_client, caplog):
    with caplog.at_level(logging.INFO, logger="ops.audit"):
        first = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})
        again = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert not first.has_header("Idempotent-Replayed")
    assert Client.objects.count() == 1
    assert len([line for line in caplog.records if "created" in line.getMessage()]) == 1


def test_a_retried_mailing_create_is_one_mailing(api_client):
    body = {"text": "Autumn sale", **window()}

    answers = [post(api_client, "/api/v1/mailings/", body) for _ in range(3)]

    assert {answer.status_code for answer in answers} == {201}
    assert Mailing.objects.count() == 1


def test_without_a_key_a_retry_is_a_new_request(api_client):
    body = {"text": "Autumn sale", **window()}

    api_client.post("/api/v1/mailings/", body)
    api_client.post("/api/v1/mailings/", body)

    assert Mailing.objects.count() == 2


def test_a_retried_action_replays_its_answer_instead_of_a_409(api_client):
    mailing = mailing_in(MailingState.RUNNING)
    url = f"/api/v1/mailings/{mailing.pk}/pause/"

    first, again = post(api_client, url), post(api_client, url)

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert api_client.post(url).status_code == 409  # without the key: paused already


def test_a_retried_resend_creates_one_mailing(api_client):
    finished = mailing_in(MailingState.FINISHED, failed=2)
    url, body = f"/api/v1/mailings/{finished.pk}/resend/", window()

    answers = [post(api_client, url, body) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [201, 201]
    assert Mailing.objects.filter(resend_of=finished).count() == 1


def test_a_retried_test_send_sends_once(api_client, settings, monkeypatch):
    monkeypatch.setattr("ops.enqueue.current_app.send_task", lambda name, args: None)
    mailing, client = MailingFactory(), ClientFactory()
    url = f"/api/v1/mailings/{mailing.pk}/test/"

    answers = [post(api_client, url, {"client_ids": [client.pk]}) for _ in range(2)]

    assert [answer.status_code for answer in answers] == [202, 202]
    assert TestSend.objects.count() == 1


def test_a_retried_csv_import_is_one_import(api_client):
    def upload():
        file = SimpleUploadedFile("clients.csv", b"phone\n79160000001\n79160000002\n", "text/csv")
        return post(api_client, "/api/v1/clients/import/", {"file": file}, format="multipart")

    first, again = upload(), upload()

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"


def test_a_csv_body_is_fingerprinted_by_its_content(api_client):
    def import_body(body: bytes):
        return post(api_client, "/api/v1/clients/import/", body, content_type="text/csv")

    first = import_body(b"phone\n79160000001\n")
    again = import_body(b"phone\n79160000001\n")
    other = import_body(b"phone\n79160000002\n")

    assert (first.status_code, again.status_code, other.status_code) == (200, 200, 422)
    assert again["Idempotent-Replayed"] == "true"
    assert list(Client.objects.values_list("phone", flat=True)) == ["79160000001"]


def test_the_same_key_with_another_body_is_a_422(api_client):
    post(api_client, "/api/v1/clients/", {"phone": "79160000001"})

    response = post(api_client, "/api/v1/clients/", {"phone": "79160000002"})

    assert response.status_code == 422
    assert "another request" in response.json()["detail"]
    assert list(Client.objects.values_list("phone", flat=True)) == ["79160000001"]


def test_the_same_key_on_another_route_is_a_422(api_client):
    post(api_client, "/api/v1/mailings/", {"text": "Sale", **window()})

    assert post(api_client, "/api/v1/clients/", {"phone": "79160000001"}).status_code == 422


def test_the_same_key_while_the_first_request_runs_is_a_409(api_client, operator):
    first = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})
    # As if that request had claimed the key and not answered yet.
    IdempotencyKey.objects.filter(user=operator, key=KEY).update(status_code=None, body=None)

    response = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})

    assert first.status_code == 201
    assert response.status_code == 409
    assert "still running" in response.json()["detail"]


def test_a_claim_left_by_a_dead_process_is_taken_over_after_its_lease(api_client, operator):
    post(api_client, "/api/v1/clients/", {"phone": "79160000001"})
    Client.objects.all().delete()
    IdempotencyKey.objects.filter(user=operator, key=KEY).update(
        status_code=None, body=None, created_at=timezone.now() - IN_PROGRESS_LEASE - timedelta(seconds=1)
    )

    response = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})

    assert response.status_code == 201
    assert not response.has_header("Idempotent-Replayed")
    assert Client.objects.count() == 1


def test_keys_are_per_user(api_client, django_user_model):
    other = token_client(user_with_role(django_user_model, "other", OPERATORS))

    mine = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})
    theirs = post(other, "/api/v1/clients/", {"phone": "79160000002"})

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert Client.objects.count() == 2


def test_an_error_answer_is_replayed_too(api_client):
    first = post(api_client, "/api/v1/clients/", {"phone": "not a phone"})
    again = post(api_client, "/api/v1/clients/", {"phone": "not a phone"})

    assert first.status_code == again.status_code == 400
    assert again.json() == first.json()


def test_a_500_releases_the_key_so_that_the_retry_runs(api_client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr("clients.serializers.ClientSerializer.create", broken)
        api_client.raise_request_exception = False
        assert post(api_client, "/api/v1/clients/", {"phone": "79160000001"}).status_code == 500

    response = post(api_client, "/api/v1/clients/", {"phone": "79160000001"})

    assert response.status_code == 201
    assert Client.objects.count() == 1


@pytest.mark.parametrize(
    "key", ["", "k" * 256, "ключ", "a\tb"], ids=["empty", "too long", "not ascii", "tab"]
)
def test_a_malformed_key_is_a_400_naming_the_header(api_client, key):
    response = post(api_client, "/api/v1/clients/", {"phone": "79160000001"}, key=key)

    assert response.status_code == 400
    assert list(response.json()) == ["Idempotency-Key"]
    assert not Client.objects.exists()


def test_an_expired_key_is_a_new_request(api_client, operator):
    post(api_client, "/api/v1/mailings/", {"text": "Sale", **window()})
    IdempotencyKey.objects.update(created_at=timezone.now() - idempotency_lifetime())

    response = post(api_client, "/api/v1/mailings/", {"text": "Sale", **window()})

    assert response.status_code == 201
    assert Mailing.objects.count() == 2


def test_beats_purge_deletes_expired_keys_only(api_client, operator):
    post(api_client, "/api/v1/clients/", {"phone": "79160000001"})
    post(api_client, "/api/v1/clients/", {"phone": "79160000002"}, key="fresh")
    IdempotencyKey.objects.filter(key=KEY).update(created_at=timezone.now() - idempotency_lifetime())

    purge_idempotency_keys()

    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["fresh"]


def test_the_purge_is_on_beats_schedule():
    from mailing_service import settings as configured

    tasks = {entry["task"] for entry in configured.CELERY_BEAT_SCHEDULE.values()}
    assert "ops.tasks.purge_idempotency_keys" in tasks
