"""The daily statistics report, sent through a real SMTP server on loopback and read back."""

import os
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import connections

from clients.tests.factories import ClientFactory
from conftest import concurrent_writers
from console.services import daily_report_send_if_due
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app.models import Message
from messages_app.tests.factories import MessageFactory
from ops.models import DailyReport, ProviderPauseEvent
from ops.services import provider_attempts_record

pytestmark = pytest.mark.django_db(transaction=True)

Status = Message.Status
# 09:00 in Moscow (UTC+3) on 2026-11-29: the report covers 2026-11-28 06:00 to 2026-11-29 06:00 UTC.
SEND_AT = datetime(2026, 11, 29, 6, 0, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def report_settings(settings):
    settings.STATS_EMAIL_RECIPIENTS = ["ops@example.com", "lead@example.com"]
    settings.STATS_EMAIL_TIME = "09:00"
    settings.STATS_EMAIL_TIMEZONE = "Europe/Moscow"
    settings.DEFAULT_FROM_EMAIL = "reports@example.com"


def mailing_with(statuses: dict[str, int], *, start: datetime, end: datetime, text: str, error: str = ""):
    mailing = MailingFactory(text=text)
    Mailing.objects.filter(pk=mailing.pk).update(start_at=start, end_at=end, launched_at=start)
    for status, count in statuses.items():
        for _ in range(count):
            last_error = error if status in (Status.FAILED, Status.PENDING) else ""
            MessageFactory(mailing=mailing, client=ClientFactory(), status=status, last_error=last_error)
    return mailing


@pytest.fixture
def day_of_mailings():
    finished = mailing_with(
        {Status.SENT: 7, Status.FAILED: 2, Status.EXPIRED: 1, Status.UNKNOWN: 1},
        start=datetime(2026, 11, 28, 8, 0, tzinfo=UTC),
        end=datetime(2026, 11, 28, 10, 0, tzinfo=UTC),
        text="Autumn sale",
        error="rejected by the provider with code 7 for 79161234567",
    )
    running = mailing_with(
        {Status.SENT: 3, Status.PENDING: 1},
        start=datetime(2026, 11, 29, 5, 0, tzinfo=UTC),
        end=datetime(2026, 11, 30, 5, 0, tzinfo=UTC),
        text="Winter tyres",
        error="HTTP 503",
    )
    # Ended before the period: not in the report.
    mailing_with(
        {Status.SENT: 5}, start=SEND_AT - timedelta(days=3), end=SEND_AT - timedelta(days=2), text="Old"
    )
    provider_attempts_record(
        outcomes={"sent": 10, "failed": 2, "retry": 3, "unanswered": 2, "deferred": 4},
        now=datetime(2026, 11, 28, 8, 30, tzinfo=UTC),
    )
    # Outside the period: not counted.
    provider_attempts_record(outcomes={"sent": 50}, now=datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    # Two senders tripping together: one pause of 40 s.
    nine = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    ProviderPauseEvent.objects.create(started_at=nine, until=nine + timedelta(seconds=30))
    ProviderPauseEvent.objects.create(
        started_at=nine + timedelta(seconds=10), until=nine + timedelta(seconds=40)
    )
    return finished, running


def parts(message):
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    return text, html


def test_the_report_arrives_once_with_both_parts_and_the_databases_figures(smtp_inbox, day_of_mailings):
    finished, running = day_of_mailings

    with time_machine.travel(SEND_AT, tick=False):
        assert daily_report_send_if_due(now=SEND_AT) is True
        # A second beat, a retried task: nothing more goes out.
        assert daily_report_send_if_due(now=SEND_AT + timedelta(minutes=1)) is False

    assert len(smtp_inbox.received) == 1
    recipients, message = smtp_inbox.received[0]
    if path := os.environ.get("STATS_EMAIL_OUT"):  # the email quoted in docs/operations.md
        with open(path, "wb") as out:
            out.write(message.as_bytes())
    assert recipients == ["ops@example.com", "lead@example.com"]
    assert message["Subject"] == "SMS mailings: daily report for 2026-11-29"
    assert message["From"] == "reports@example.com"
    text, html = parts(message)
    for part in (text, html):
        assert "2026-11-28 09:00" in part and "2026-11-29 09:00" in part  # Moscow time
        assert f"#{finished.pk}" in part and f"#{running.pk}" in part
        assert "Old" not in part
        assert "7916***4567" in part and "79161234567" not in part
        assert "HTTP 503" in part
    # Never confirmed (unknown) apart from never attempted (expired).
    assert (
        "TOTALS: 2 mailings, 15 messages: pending 1, sending 0, sent 10, failed 2, expired 1, unknown 1"
        in text
    )
    assert "2 x rejected by the provider with code 7 for 7916***4567" in text
    assert f'#{finished.pk} "Autumn sale"' in text and "100.0 % done" in text
    assert f'- #{running.pk} "Winter tyres": 75.0 % done' in text
    assert (
        "PROVIDER: 17 attempts, 7 errors (41.2 %): sent 10, rejected 2, retried 3, "
        "unanswered (timed out, retried) 2" in text
    )
    assert "PAUSES: 1, 40 s in all: 12:00:00-12:00:40" in text
    assert "<img" not in html and "http" not in html.replace("http-equiv", "")
    assert DailyReport.objects.get().sent_at == SEND_AT


def test_nothing_is_sent_before_the_time_nor_without_recipients(smtp_inbox, settings):
    assert daily_report_send_if_due(now=SEND_AT - timedelta(minutes=1)) is False
    settings.STATS_EMAIL_RECIPIENTS = []
    assert daily_report_send_if_due(now=SEND_AT) is False
    assert smtp_inbox.received == []
    assert not DailyReport.objects.exists()


@concurrent_writers
def test_two_beats_at_the_same_moment_send_one_email(smtp_inbox, day_of_mailings):
    results = []
    start = threading.Barrier(2)

    def beat():
        try:
            start.wait()
            results.append(daily_report_send_if_due(now=SEND_AT))
        finally:
            connections.close_all()  # this thread's own: left open, it can outlive the test database

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(results) == [False, True]
    assert len(smtp_inbox.received) == 1


def test_a_failed_send_gives_the_claim_back_for_the_next_beat(smtp_inbox, settings):
    settings.EMAIL_PORT = 1  # nobody listens there
    with pytest.raises(OSError):
        daily_report_send_if_due(now=SEND_AT)
    assert DailyReport.objects.get().claimed_until is None

    settings.EMAIL_PORT = smtp_inbox.port
    assert daily_report_send_if_due(now=SEND_AT + timedelta(minutes=1)) is True
    assert len(smtp_inbox.received) == 1


def test_the_command_sends_a_report_for_the_period_given(smtp_inbox, day_of_mailings, capsys):
    finished, running = day_of_mailings

    call_command(
        "send_stats_report",
        "--since",
        "2026-11-28T10:00",
        "--until",
        "2026-11-28T12:00",
        "--to",
        "me@example.com",
    )

    recipients, message = smtp_inbox.received[0]
    assert recipients == ["me@example.com"]
    assert message["Subject"] == "SMS mailings: report 2026-11-28 10:00 to 2026-11-28 12:00"
    text, _ = parts(message)
    assert f"#{finished.pk}" in text and f"#{running.pk}" not in text
    assert "Sent to me@example.com: 1 mailings, 11 messages" in capsys.readouterr().out
    assert not DailyReport.objects.exists()  # the daily one still goes
