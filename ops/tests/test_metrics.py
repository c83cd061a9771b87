import asyncio
import contextlib
import socket
from datetime import timedelta
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from clients.tests.factories import ClientFactory
from conftest import run_python
from mailing_service.collectors import cache_key
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app.models import Message
from messages_app.sending.transports.base import TransportError
from messages_app.tests.factories import MessageFactory
from ops import metrics

pytestmark = pytest.mark.django_db

Status = Message.Status


@pytest.fixture(autouse=True)
def fresh_database_figures():
    cache.delete(cache_key())
    yield
    cache.delete(cache_key())


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_metrics_need_the_bearer_token_when_one_is_set(anonymous_client, settings):
    settings.METRICS_TOKEN = "scrape-secret"

    assert anonymous_client.get("/metrics").status_code == 403
    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION="scrape-secret").status_code == 403
    assert anonymous_client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_without_a_token_only_this_machine_may_scrape(anonymous_client, settings):
    settings.METRICS_TOKEN = ""

    assert anonymous_client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert anonymous_client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_FORWARDED",
        "HTTP_X_REAL_IP",
        "HTTP_TRUE_CLIENT_IP",
        "HTTP_CF_CONNECTING_IP",
        "HTTP_X_CLIENT_IP",
        "HTTP_FASTLY_CLIENT_IP",
        "HTTP_X_CLUSTER_CLIENT_IP",
        "HTTP_X_ORIGINATING_IP",
        "HTTP_X_FORWARDED_HOST",
        "HTTP_X_ENVOY_EXTERNAL_ADDRESS",
        "HTTP_VIA",
    ],
)
def test_without_a_token_a_proxy_on_this_machine_is_not_trusted(anonymous_client, settings, header):
    settings.METRICS_TOKEN = ""

    assert (
        anonymous_client.get("/metrics", REMOTE_ADDR="127.0.0.1", **{header: "203.0.113.9"}).status_code
        == 403
    )


def test_database_gauges_match_the_rows(anonymous_client):
    now = timezone.now()
    running = MailingFactory()
    Mailing.objects.filter(pk=running.pk).update(
        start_at=now - timedelta(hours=1), end_at=now + timedelta(hours=1)
    )
    MailingFactory()  # scheduled
    MailingFactory(paused_at=now)
    MailingFactory(cancelled_at=now)
    for status in (Status.SENT, Status.SENT, Status.FAILED):
        MessageFactory(mailing=running, client=ClientFactory(), status=status)
    MessageFactory(mailing=running, client=ClientFactory(), next_attempt_at=now - timedelta(seconds=90))
    MessageFactory(mailing=running, client=ClientFactory(), next_attempt_at=now + timedelta(minutes=5))

    samples = scrape(anonymous_client)

    assert samples[("sms_messages", (("status", "sent"),))] == 2
    assert samples[("sms_messages", (("status", "failed"),))] == 1
    assert samples[("sms_messages", (("status", "pending"),))] == 2
    assert samples[("sms_messages_pending", ())] == 2
    assert samples[("sms_messages_due", ())] == 1
    assert 90 <= samples[("sms_oldest_due_message_age_seconds", ())] < 120
    assert samples[("sms_mailings", (("state", "running"),))] == 1
    assert samples[("sms_mailings", (("state", "scheduled"),))] == 1
    assert samples[("sms_mailings", (("state", "paused"),))] == 1
    assert samples[("sms_mailings", (("state", "cancelled"),))] == 1
    assert samples[("sms_database_up", ())] == 1
    assert samples[("sms_provider_paused", (("provider", "default"),))] == 0


def test_figures_cached_for_another_database_are_not_served(anonymous_client):
    mailing = MailingFactory()
    Mailing.objects.filter(pk=mailing.pk).update(end_at=timezone.now() + timedelta(days=1))
    MessageFactory(mailing=mailing, client=ClientFactory(), status=Status.SENT)
    assert scrape(anonymous_client)[("sms_messages", (("status", "sent"),))] == 1  # now in the cache

    MessageFactory(mailing=mailing, client=ClientFactory(), status=Status.SENT)
    with mock.patch.dict(connection.settings_dict, NAME="another_database"):
        assert scrape(anonymous_client)[("sms_messages", (("status", "sent"),))] == 2


def test_a_cache_that_does_not_answer_costs_queries_not_the_scrape(anonymous_client):
    # Only around the scrape: fresh_database_figures needs the working cache again when it tidies up.
    silent_cache = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",  # nobody listens on port 1
    }
    with override_settings(CACHES={"default": silent_cache}):
        samples = scrape(anonymous_client)

    assert samples[("sms_database_up", ())] == 1
    assert ("sms_messages", (("status", "sent"),)) in samples


def test_api_requests_are_counted_by_route_pattern_not_path(api_client, anonymous_client):
    mailing = MailingFactory()
    route = "api/v1/mailings/<pk>/"
    key = ("sms_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))
    before = scrape(anonymous_client).get(key, 0)

    api_client.get(f"/api/v1/mailings/{mailing.pk}/")
    api_client.get(f"/api/v1/mailings/{mailing.pk}/")

    samples = scrape(anonymous_client)
    assert samples[key] == before + 2
    assert not any(f"/{mailing.pk}/" in str(labels) for _, labels in samples)


def test_unknown_http_methods_share_one_label(anonymous_client):
    key = ("sms_http_requests_total", (("method", "other"), ("route", "api/v1/clients/"), ("status", "401")))
    before = scrape(anonymous_client).get(key, 0)

    anonymous_client.generic("FOO1", "/api/v1/clients/")
    anonymous_client.generic("FOO2", "/api/v1/clients/")

    samples = scrape(anonymous_client)
    assert samples[key] == before + 2
    assert not any("FOO" in str(labels) for _, labels in samples)


def test_celery_task_runs_and_failures_are_counted(anonymous_client):
    from celery import shared_task

    from console.tasks import send_daily_report

    @shared_task(name="ops.tests.failing_task")
    def failing_task():
        raise ValueError("boom")

    succeeded = (
        "sms_celery_tasks_total",
        (("state", "succeeded"), ("task", "console.tasks.send_daily_report")),
    )
    failed = ("sms_celery_tasks_total", (("state", "failed"), ("task", "ops.tests.failing_task")))
    before = scrape(anonymous_client)

    send_daily_report.apply()
    failing_task.apply()

    samples = scrape(anonymous_client)
    assert samples[succeeded] == before.get(succeeded, 0) + 1
    assert samples[failed] == before.get(failed, 0) + 1


@pytest.mark.parametrize(
    ("status", "permanent", "expected"),
    [
        (200, False, "garbage"),
        (200, True, "rejected"),
        (401, False, "auth"),
        (503, False, "5xx"),
        (429, False, "429"),
    ],
)
def test_answers_are_classed(status, permanent, expected):
    assert metrics.answer_error_class(status, TransportError("x", permanent=permanent)) == expected


def test_requests_without_an_answer_are_classed():
    assert metrics.network_error_class(TimeoutError()) == "timeout"
    assert metrics.network_error_class(ConnectionRefusedError()) == "refused"
    assert metrics.network_error_class(OSError("reset")) == "network"


def _provider_call(status: int | None, error: BaseException | None = None, *, cause=None) -> None:
    """One request as the transport times it: an answer with `status`, or `error` raised (with the
    HTTP client's `cause` as its context, as the transport re-raises)."""
    with contextlib.suppress(BaseException), metrics.ProviderCall() as call:
        call.status = status
        try:
            if cause is not None:
                raise cause
        finally:
            if error is not None:
                raise error


@pytest.mark.parametrize(
    ("status", "error", "cause", "counted"),
    [
        (200, None, None, None),
        (503, TransportError("HTTP 503"), None, "5xx"),
        (None, TransportError("refused"), ConnectionRefusedError(), "refused"),
        (None, asyncio.CancelledError(), None, None),  # the caller counts it (timeout or cut)
    ],
)
def test_a_provider_call_is_timed_always_and_its_error_classed_unless_cancelled(
    status, error, cause, counted
):
    classes = ("5xx", "refused", "network", "timeout")

    def errors() -> dict[str, float]:
        return {name: metrics.PROVIDER_ERRORS.labels(name)._value.get() for name in classes}

    timed, counts = metrics.PROVIDER_REQUEST_SECONDS._sum.get(), errors()
    _provider_call(status, error, cause=cause)

    assert metrics.PROVIDER_REQUEST_SECONDS._sum.get() > timed
    assert {name: errors()[name] - counts[name] for name in classes} == {
        name: int(name == counted) for name in classes
    }


def test_metric_files_are_named_by_host_and_pid_so_containers_sharing_the_folder_never_share_one(tmp_path):
    count_once = "import os; from ops import metrics; metrics.FANOUT_MESSAGES.inc(); print(os.getpid())"
    result = run_python(count_once, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))

    assert result.returncode == 0, result.stderr
    identifier = f"{socket.gethostname()}-{result.stdout.strip()}"
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"counter_{identifier}.db",  # the counter it counted
        f"histogram_{identifier}.db",  # histograms without labels exist from the start
    ]
