"""Live senders are known: readiness and the metrics count them, a worker's check asks for its own."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from messages_app import services, tasks
from messages_app.models import SenderHeartbeat

pytestmark = pytest.mark.django_db


def seen(holder: str, *, ago: float) -> None:
    services.sender_heartbeat(holder=holder, now=timezone.now() - timedelta(seconds=ago))


def test_a_sender_is_live_while_its_heartbeat_is_within_a_lease(settings):
    settings.SENDER_LEASE_SECONDS = 5
    seen("a:1:x", ago=1)
    seen("a:2:y", ago=1)
    seen("b:1:z", ago=1)
    seen("a:3:dead", ago=30)

    now = timezone.now()
    assert services.senders_live(now=now) == 3
    assert services.senders_live(now=now, host="a") == 2


def test_a_stopping_sender_is_no_longer_counted_and_the_sweeper_forgets_the_dead():
    seen("a:1:x", ago=0)
    seen("a:2:killed", ago=120)

    services.sender_heartbeat_end(holder="a:1:x")
    tasks.sweep_messages()

    assert not SenderHeartbeat.objects.exists()


def test_readiness_reports_live_senders_without_failing_when_there_are_none(anonymous_client, monkeypatch):
    monkeypatch.setattr("ops.views._broker_check", lambda: "ok")
    before = anonymous_client.get(reverse("health-ready"))
    seen("a:1:x", ago=0)
    after = anonymous_client.get(reverse("health-ready"))

    assert (before.status_code, before.json()["senders"]) == (200, 0)
    assert (after.status_code, after.json()["senders"]) == (200, 1)


def test_the_metrics_count_live_senders(anonymous_client, settings):
    settings.METRICS_DB_CACHE_SECONDS = 0
    seen("a:1:x", ago=0)

    scrape = anonymous_client.get(reverse("metrics"), REMOTE_ADDR="127.0.0.1").content.decode()

    assert "sms_senders_live 1.0" in scrape


def test_the_workers_check_passes_only_with_a_live_sender_of_its_host(capsys):
    seen("worker-a:1:x", ago=0)

    call_command("check_senders", "--host", "worker-a")
    assert "1 sender(s) alive on worker-a" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no sender alive on worker-b"):
        call_command("check_senders", "--host", "worker-b")


def test_the_workers_check_passes_where_senders_are_disabled(settings, capsys):
    settings.SENDER_ENABLED = False

    call_command("check_senders", "--host", "worker-b")

    assert "senders disabled" in capsys.readouterr().out
