from datetime import datetime, timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from console.services import report_timezone, stats_report_send


class Command(BaseCommand):
    help = (
        "Send the statistics report now, for a period given here (default: the last 24 hours), to "
        "STATS_EMAIL_RECIPIENTS or --to. It does not count as the day's report: the daily one still goes."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--since",
            help="Start, ISO 8601 (e.g. 2026-11-28T09:00); naive times are "
            "in STATS_EMAIL_TIMEZONE. Default: --until minus 24 hours.",
        )
        parser.add_argument("--until", help="End, ISO 8601. Default: now.")
        parser.add_argument("--to", action="append", default=[], help="A recipient (repeatable).")

    def handle(self, *args, since, until, to, **options):
        until = self._moment(until) if until else timezone.now()
        since = self._moment(since) if since else until - timedelta(days=1)
        if since >= until:
            raise CommandError("--since must come before --until")
        recipients = to or settings.STATS_EMAIL_RECIPIENTS
        if not recipients:
            raise CommandError("No recipients: set STATS_EMAIL_RECIPIENTS or give --to")
        tz = report_timezone()
        period = f"{since.astimezone(tz):%Y-%m-%d %H:%M} to {until.astimezone(tz):%Y-%m-%d %H:%M}"
        subject = f"SMS mailings: report {period}"
        report = stats_report_send(since=since, until=until, recipients=recipients, subject=subject)
        mailings, messages = len(report.mailings), report.totals["total"]
        self.stdout.write(f"Sent to {', '.join(recipients)}: {mailings} mailings, {messages} messages")

    @staticmethod
    def _moment(text: str) -> datetime:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise CommandError(f"Not an ISO 8601 date and time: {text!r}") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=report_timezone())
