"""End to end against gunicorn on PostgreSQL: a POST retried with its Idempotency-Key, after its
answer or at the same time as the first try, creates one mailing."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from rest_framework.authtoken.models import Token

from fake_provider.client import free_port
from harness.processes import Process
from mailings.models import Mailing
from messages_app.tests.e2e import database_url

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(services_up, tmp_path) -> str:
    """gunicorn with two workers on the tests' database, broker and cache: its base URL."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "mailing_service.wsgi", "--workers", "2"]
    command += ["--bind", f"127.0.0.1:{port}"]
    env = os.environ | {
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": services_up,
        "CACHE_URL": services_up,
    }
    with Process(command, env=env, log=tmp_path / "web.log") as process:
        process.wait_for_url(f"http://127.0.0.1:{port}/health/live")
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def headers(operator) -> dict[str, str]:
    return {"Authorization": f"Token {Token.objects.create(user=operator).key}", "Idempotency-Key": "retry-1"}


def mailing_body() -> dict:
    start = timezone.now() + timedelta(days=1)
    return {"text": "Sale", "start_at": start.isoformat(), "end_at": (start + timedelta(hours=1)).isoformat()}


def test_a_retry_after_the_answer_replays_it(web, headers):
    body = mailing_body()

    first = requests.post(f"{web}/api/v1/mailings/", json=body, headers=headers, timeout=30)
    again = requests.post(f"{web}/api/v1/mailings/", json=body, headers=headers, timeout=30)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Mailing.objects.count() == 1


def test_tries_sent_together_create_one_mailing(web, headers):
    body = mailing_body()

    def send(_) -> int:
        return requests.post(f"{web}/api/v1/mailings/", json=body, headers=headers, timeout=30).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(send, range(4)))

    # Each try either ran, found the first still running (409), or replayed its answer.
    assert set(statuses) <= {201, 409}
    assert 201 in statuses
    assert Mailing.objects.count() == 1
