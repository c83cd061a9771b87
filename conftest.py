import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.roles import OPERATORS, VIEWERS
from fake_provider.client import FakeProviderProcess, free_port
from mailing_service.celery import app as celery_app
from messages_app.tests.e2e import FAKE_PROVIDER_SEED, TOKEN, Worker, require_real_services

REPO_ROOT = Path(__file__).resolve().parent

# The tests' key, theirs and that of the processes they start: a fresh clone has no local key yet
# (manage.py ensure_local_state generates it) and no test needs that one. Empty counts as unset, as in
# a .env copied from .env.example.
os.environ["DJANGO_SECRET_KEY"] = (
    os.environ.get("DJANGO_SECRET_KEY") or "tests-only-" + "0123456789abcdef" * 4
)
settings.SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]

# Two threads writing at once: the tests' SQLite database (in memory, shared cache) locks whole tables
# across threads and ignores the busy timeout; PostgreSQL does not.
concurrent_writers = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="in-memory SQLite cannot take two writing threads"
)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter at the repository's root, with this environment plus `env`: for
    what a process does as it starts (what it imports, what it configures once)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def user_with_role(django_user_model, username: str, group: str):
    user = django_user_model.objects.create_user(username=username, password=f"{username}-password-1")
    user.groups.add(Group.objects.get(name=group))
    return user


def token_client(user) -> APIClient:
    """An API client authenticated with the user's token, as a script would call the API."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def operator(django_user_model):
    """A user in the operators group (made by accounts' data migration): reads and writes everything."""
    return user_with_role(django_user_model, "operator", OPERATORS)


@pytest.fixture
def viewer(django_user_model):
    """A user in the viewers group: reads clients (phones masked), mailings and messages; writes nothing."""
    return user_with_role(django_user_model, "viewer", VIEWERS)


@pytest.fixture
def api_client(operator):
    return token_client(operator)


@pytest.fixture
def viewer_client(viewer):
    return token_client(viewer)


@pytest.fixture(autouse=True)
def no_rate_limits(settings):
    """Tests send requests far faster than anyone should: no API rate applies unless a test sets one
    (mailing_service/tests/test_throttling.py)."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {}}


@pytest.fixture(autouse=True)
def no_default_local_window(settings):
    """The tests run at any hour: the mailings they create have no window unless a test gives one, or
    sets this default (mailings/tests/test_quiet_hours.py)."""
    settings.DEFAULT_LOCAL_WINDOW = ""


@pytest.fixture
def own_cache(settings, request):
    """A cache of this test's own, so that rate-limit counts start at zero and leave nothing behind.

    Its own LOCATION: locmem caches of one location share their store, and on SQLite a rolled-back
    test's user id comes back in the next test, which would then find the earlier test's counts.
    """
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        }
    }


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


@pytest.fixture
def broker_down(celery_test_broker):
    """The web's broker at a closed port, as while the broker is down; the tests' broker after."""

    def use(url: str) -> None:
        celery_app.conf.broker_url = url
        # Celery keeps its connection pools per app once made: new ones for the new URL.
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    use(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    yield
    use(celery_test_broker)


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


# End-to-end tests (marked e2e): real services, the fake provider and a Celery worker as processes.


@pytest.fixture
def services_up(celery_test_broker) -> str:
    """PostgreSQL and Redis answer (else the test skips, or fails under CI): the tests' Redis URL,
    broker and cache of the worker processes."""
    require_real_services(celery_test_broker)
    return celery_test_broker


@pytest.fixture
def fake_provider_process(services_up):
    """``python -m fake_provider`` on free ports, stopped after the test."""
    with FakeProviderProcess(TOKEN, seed=FAKE_PROVIDER_SEED) as fake:
        yield fake


@pytest.fixture
def worker(services_up, fake_provider_process, tmp_path, transactional_db):
    """A Celery worker with beat, as a process, sending to `fake_provider_process`."""
    with Worker(
        broker_url=services_up, cache_url=services_up, provider=fake_provider_process, workdir=tmp_path
    ) as running:
        yield running
