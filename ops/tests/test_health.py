from unittest import mock

import pytest
from django.db import OperationalError

pytestmark = pytest.mark.django_db


def test_live_answers_without_touching_the_database(anonymous_client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = anonymous_client.get("/health/live")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_migrations_and_broker(anonymous_client, settings, celery_test_broker):
    settings.CELERY_BROKER_URL = celery_test_broker  # Redis when it answers

    response = anonymous_client.get("/health/ready")

    assert response.status_code == 200, response.json()
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "migrations": "ok", "broker": "ok"},
        "senders": 0,  # no worker here: said, not a reason to be unready
    }


def test_ready_is_503_when_the_broker_does_not_answer(anonymous_client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nobody listens on port 1
    settings.HEALTH_BROKER_TIMEOUT = 0.5

    response = anonymous_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["checks"]["broker"] == "unreachable"


def test_ready_is_503_when_the_database_is_unreachable(anonymous_client):
    with mock.patch("ops.views.connection.cursor", side_effect=OperationalError("connection refused")):
        response = anonymous_client.get("/health/ready")

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unreachable", "migrations": "skipped", "broker": "ok"}
