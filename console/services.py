"""Sending the statistics report: on demand (manage.py send_stats_report) and once a day (tasks)."""

import logging
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Q
from django.template.loader import render_to_string

from ops.models import DailyReport

from .selectors import StatsReport, stats_report

log = logging.getLogger(__name__)

# A claimed report not marked sent within this long is taken to be lost with its sender.
REPORT_CLAIM = timedelta(minutes=10)


def report_timezone() -> ZoneInfo:
    return ZoneInfo(settings.STATS_EMAIL_TIMEZONE)


def daily_report_period(day: date) -> tuple[datetime, datetime]:
    """The 24 hours before the day's send time (STATS_EMAIL_TIME in STATS_EMAIL_TIMEZONE)."""
    until = datetime.combine(day, time.fromisoformat(settings.STATS_EMAIL_TIME), tzinfo=report_timezone())
    return until - timedelta(days=1), until


def stats_report_send(
    *, since: datetime, until: datetime, recipients: list[str], subject: str
) -> StatsReport:
    """Builds the report of [since, until) and mails it (text and HTML parts) to the recipients."""
    report = stats_report(since=since, until=until)
    context = {"report": report, "subject": subject, "tz": report_timezone()}
    email = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string("console/stats_report.txt", context),
        to=recipients,
    )
    email.attach_alternative(render_to_string("console/stats_report.html", context), "text/html")
    email.send()
    log.info("statistics report of %s to %s sent to %s recipients", since, until, len(recipients))
    return report


def daily_report_send_if_due(*, now: datetime) -> bool:
    """Sends today's report once its time has come, once: True when this call sent it.

    Any number of beats or task retries may call this: the day's row is claimed by a conditional
    UPDATE, so one caller sends; a caller that fails gives its claim back, one that dies loses it
    after REPORT_CLAIM. Sending then marking can still repeat a mail if the process dies in between.
    """
    recipients = settings.STATS_EMAIL_RECIPIENTS
    local_now = now.astimezone(report_timezone())
    if not recipients or local_now.time() < time.fromisoformat(settings.STATS_EMAIL_TIME):
        return False
    day = local_now.date()
    DailyReport.objects.get_or_create(day=day)
    claimed = (
        DailyReport.objects.filter(day=day, sent_at__isnull=True)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + REPORT_CLAIM)
    )
    if not claimed:
        return False
    since, until = daily_report_period(day)
    try:
        stats_report_send(
            since=since, until=until, recipients=recipients, subject=f"SMS mailings: daily report for {day}"
        )
    except Exception:
        DailyReport.objects.filter(day=day).update(claimed_until=None)
        raise
    DailyReport.objects.filter(day=day).update(sent_at=now, recipients=", ".join(recipients))
    return True
