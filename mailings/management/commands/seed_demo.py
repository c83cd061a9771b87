from datetime import timedelta
from itertools import cycle, islice

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from clients.models import Client
from mailings.models import Mailing, MailingState

DEMO_TEXT = "Hello from the demo mailing"
DEMO_DURATION = timedelta(hours=2)
CLIENT_COUNT = 20
OPERATOR_CODES = ["900", "901"]
TAGS = ["vip", "new", ""]
TIMEZONES = ["Europe/Moscow", "Asia/Yekaterinburg", "Asia/Vladivostok", "Europe/Kaliningrad"]


def demo_clients() -> list[dict[str, str]]:
    """Twenty fixed clients, so that seeding again finds the same phones."""
    traits = zip(cycle(OPERATOR_CODES), cycle(TAGS), cycle(TIMEZONES), strict=False)
    return [
        {"phone": f"7{code}555{number:04d}", "tag": tag, "timezone": zone}
        for number, (code, tag, zone) in enumerate(islice(traits, CLIENT_COUNT))
    ]


def current_demo_mailing(now) -> Mailing | None:
    """The latest demo mailing whose window is open, whatever its state (sent in full, paused...)."""
    return Mailing.objects.filter(text=DEMO_TEXT, start_at__lte=now, end_at__gt=now).order_by("-pk").first()


def existing_mailing_line(mailing: Mailing, now) -> str:
    until = mailing.end_at.isoformat(timespec="minutes")
    state = mailing.state_at(now)
    if state == MailingState.RUNNING:
        return f"Demo mailing {mailing.pk} is already running until {until}."
    return (
        f"Demo mailing {mailing.pk} is {state.label.lower()} (its window lasts until {until}; "
        "seed_demo starts a new one after that)."
    )


class Command(BaseCommand):
    help = (
        f"Create {CLIENT_COUNT} demo clients (tags vip and new, two operator codes) and, unless the "
        "window of the last one is still open, a two-hour demo mailing to all of them starting now. "
        "Safe to run again. Launching is left to the usual path: the mailing starts sending once it "
        "is committed."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        with transaction.atomic():
            created = 0
            for values in demo_clients():
                phone = values.pop("phone")
                created += Client.objects.get_or_create(phone=phone, defaults=values)[1]
            existing = current_demo_mailing(now)
            if existing is None:
                mailing = Mailing.objects.create(start_at=now, end_at=now + DEMO_DURATION, text=DEMO_TEXT)
        self.stdout.write(f"Demo clients: {created} created, {CLIENT_COUNT - created} already there.")
        if existing is None:
            until = mailing.end_at.isoformat(timespec="minutes")
            self.stdout.write(
                f"Demo mailing {mailing.pk} created: to all clients, starting now, until {until}."
            )
        else:
            self.stdout.write(existing_mailing_line(existing, now))
