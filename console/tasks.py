from celery import shared_task
from django.utils import timezone

from .services import daily_report_send_if_due


@shared_task(autoretry_for=(OSError,), retry_backoff=60, max_retries=5)
def send_daily_report() -> None:
    """Beat rings every STATS_EMAIL_CHECK_INTERVAL; the day's row decides whether a report goes out.

    OSError covers the SMTP server being down or refusing (smtplib's errors are OSErrors).
    """
    daily_report_send_if_due(now=timezone.now())
