import time
from io import StringIO

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from mailings.management.commands.seed_demo import current_demo_mailing
from messages_app.models import Message

POLL_EVERY = 0.2


class Command(BaseCommand):
    help = (
        "For local runs (make run prints this once the services answer): wait until the demo "
        "mailing's messages are final, make sure the demo admin exists (ensure_demo_admin) and print "
        "where to click, the login and the API token."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the site is served.")
        parser.add_argument("--provider-stats-url", default="", help="The fake provider's counts.")
        parser.add_argument(
            "--wait", type=float, default=30.0, help="Seconds to wait for the demo mailing's messages."
        )

    def handle(self, *args, base_url: str, provider_stats_url: str, wait: float, **options):
        base_url = base_url.rstrip("/")
        self.stdout.write(self.demo_mailing_line(base_url, wait))
        self.stdout.write(f"API docs: {base_url}/docs/  (Authorize with: Token <API token>)")
        self.stdout.write(f"API root: {base_url}/api/v1/")
        self.stdout.write(f"Metrics: {base_url}/metrics  (health: /health/live, /health/ready)")
        if provider_stats_url:
            self.stdout.write(f"Fake provider's counts: {provider_stats_url}")
        admin = StringIO()
        call_command("ensure_demo_admin", base_url=base_url, stdout=admin)
        self.stdout.write(admin.getvalue().rstrip("\n"))

    def demo_mailing_line(self, base_url: str, wait: float) -> str:
        mailing = current_demo_mailing(timezone.now())
        if mailing is None:
            return "No demo mailing is running (python manage.py seed_demo starts one)."
        messages = Message.objects.filter(mailing=mailing)
        deadline = time.monotonic() + wait
        # Launch creates the messages, the worker sends them: wait for both, within reason.
        while not messages.exists() or messages.exclude(status__in=Message.FINAL_STATUSES).exists():
            if time.monotonic() > deadline:
                break
            time.sleep(POLL_EVERY)
        total = messages.count()
        sent = messages.filter(status=Message.Status.SENT).count()
        statistics = f"{base_url}/api/v1/mailings/{mailing.pk}/statistics/"
        return f"Demo mailing {mailing.pk}: {sent} of {total} messages sent ({statistics})"
