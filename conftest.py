import os

import pytest
import redis
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from mailing_service.celery import app as celery_app


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(username="operator", password="operator-password-1")


@pytest.fixture
def api_client(operator):
    """An API client authenticated with the operator's token, as a script would call the API."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=operator).key}")
    return client


@pytest.fixture
def anonymous_client():
    return APIClient()


@pytest.fixture(autouse=True, scope="session")
def celery_test_broker():
    """Whatever a test enqueues goes to the tests' own broker, never to a local run's queue.

    Redis db TEST_REDIS_DB (15 unless set) when Redis answers, so end-to-end tests can share it
    with their worker; an in-memory broker otherwise. Only the queue keys the tests created are
    removed afterwards.
    """
    url = test_redis_url() if redis_available() else "memory://"
    celery_app.conf.broker_url = url
    yield url
    if url != "memory://":
        remove_test_queues(url)


def test_redis_url() -> str:
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def redis_available() -> bool:
    try:
        return redis.Redis.from_url(test_redis_url(), socket_connect_timeout=1).ping()
    except redis.RedisError:
        return False


def remove_test_queues(url: str) -> None:
    connection = redis.Redis.from_url(url)
    keys = [*connection.scan_iter("_kombu.*"), "celery", "unacked", "unacked_index"]
    connection.delete(*keys)
