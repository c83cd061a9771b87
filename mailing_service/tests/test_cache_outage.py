"""With the cache unreachable (Redis at a closed port), the rate limits let requests through
uncounted: every class of route answers as it would with no limits, never 500; the outage is logged
once a minute and counted in a metric."""

import logging
import socket
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from clients.tests.factories import ClientFactory
from conftest import run_python
from fake_provider.client import free_port
from mailing_service import throttling
from mailings.tests.factories import MailingFactory

pytestmark = pytest.mark.django_db

WRONG_TOKEN = "Token 0123456789abcdef0123456789abcdef01234567"
SCOPES = ("user", "user_write", "ip", "failed_auth", "test_send", "client_import")


def uncounted(scope: str) -> float:
    return REGISTRY.get_sample_value("sms_rate_limit_uncounted_total", {"scope": scope}) or 0.0


def outage_lines(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "mailing_service.throttling"]


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """The outage's own clock, and an outage state of this test's own."""
    clock = FakeClock()
    monkeypatch.setattr(throttling, "cache_outage", throttling._CacheOutage(clock))
    return clock


@pytest.fixture
def cache_down(settings, clock):
    """Every rate set (1 a minute: any counted second request would get 429), the cache nowhere."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": dict.fromkeys(SCOPES, "1/min"),
    }
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
        }
    }


def mailing_body() -> dict:
    start = timezone.now() + timedelta(days=1)
    return {
        "text": "Hello",
        "start_at": start.isoformat(),
        "end_at": (start + timedelta(hours=1)).isoformat(),
    }


@pytest.mark.usefixtures("cache_down")
def test_every_class_of_route_answers_with_the_cache_down(
    api_client, anonymous_client, admin_client, client, django_user_model, caplog
):
    mailing = MailingFactory()
    client_id = ClientFactory().pk
    django_user_model.objects.create_user(username="someone", password="someone-password-1", is_staff=True)
    before = uncounted("user")

    with caplog.at_level(logging.WARNING, logger="mailing_service.throttling"):
        answers = {
            "list": api_client.get("/api/v1/clients/").status_code,
            "list again": api_client.get("/api/v1/mailings/").status_code,
            "create": api_client.post("/api/v1/clients/", {"phone": "79160000001"}).status_code,
            "create mailing": api_client.post("/api/v1/mailings/", mailing_body()).status_code,
            "action": api_client.post(f"/api/v1/mailings/{mailing.pk}/pause/").status_code,
            "statistics": api_client.get("/api/v1/mailings/statistics/").status_code,
            "detail": api_client.get(f"/api/v1/clients/{client_id}/").status_code,
            "health": anonymous_client.get("/health/").status_code,
            "live": anonymous_client.get("/health/live").status_code,
            "metrics": anonymous_client.get("/metrics").status_code,
            "console": admin_client.get("/admin/dashboard/").status_code,
            "admin login": client.post(
                "/admin/login/", {"username": "someone", "password": "someone-password-1"}
            ).status_code,
        }
        anonymous_client.credentials(HTTP_AUTHORIZATION=WRONG_TOKEN)
        answers["wrong token"] = anonymous_client.get("/api/v1/clients/").status_code

    assert answers == {
        "list": 200,
        "list again": 200,
        "create": 201,
        "create mailing": 201,
        "action": 200,
        "statistics": 200,
        "detail": 200,
        "health": 200,
        "live": 200,
        "metrics": 200,
        "console": 200,
        "admin login": 302,
        "wrong token": 401,
    }
    assert len(outage_lines(caplog)) == 1
    assert uncounted("user") - before >= 7


def test_the_outage_is_logged_again_after_a_minute(cache_down, clock, api_client, caplog):
    with caplog.at_level(logging.WARNING, logger="mailing_service.throttling"):
        api_client.get("/api/v1/clients/")
        clock.now += throttling.CACHE_RETRY_SECONDS + 1  # asks the cache again: fails again
        api_client.get("/api/v1/clients/")
        clock.now += throttling.OUTAGE_LOG_INTERVAL
        api_client.get("/api/v1/clients/")

    assert len(outage_lines(caplog)) == 2


def test_the_limits_count_again_once_the_cache_answers(settings, cache_down, clock, api_client, own_cache):
    """own_cache replaces the unreachable cache with one that answers, as Redis coming back."""
    throttling.cache_outage.skip_until = clock.now + throttling.CACHE_RETRY_SECONDS  # a failure just now

    assert [api_client.get("/api/v1/clients/").status_code for _ in range(3)] == [200, 200, 200]
    clock.now += throttling.CACHE_RETRY_SECONDS
    assert [api_client.get("/api/v1/clients/").status_code for _ in range(2)] == [200, 429]


def test_a_redis_cache_gives_up_after_cache_timeout():
    """redis-py would wait for ever on a Redis that stopped answering, and every request with it."""
    result = run_python(
        "from django.conf import settings; print(settings.CACHES['default']['OPTIONS'])",
        DJANGO_SETTINGS_MODULE="mailing_service.settings",
        CACHE_URL="redis://127.0.0.1:6379/0",
        CACHE_TIMEOUT="0.5",
    )

    assert result.stdout.strip() == "{'socket_connect_timeout': 0.5, 'socket_timeout': 0.5}", result.stderr


def test_a_cache_that_never_answers_fails_open_after_its_timeout(settings, clock, api_client):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"user": "1/min"}}
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
                "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
            }
        }

        statuses = [api_client.get("/api/v1/clients/").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
