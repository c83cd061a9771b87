from datetime import timedelta
from itertools import cycle, islice

from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from clients.models import Client
from mailings.models import Mailing

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


def running_demo_mailing(now) -> Mailing | None:
    return Mailing.objects.filter(text=DEMO_TEXT, start_at__lte=now, end_at__gt=now).order_by("-pk").first()


class Command(BaseCommand):
    help = (
        f"Create {CLIENT_COUNT} demo clients (tags vip and new, two operator codes) and, unless one is "
        "running, a two-hour demo mailing to all of them starting now. Safe to run again. "
        "Launching is left to the usual path: the mailing starts sending once it is committed."
    )

    def handle(self, *args, **options):
        now = timezone.now()
        with transaction.atomic():
            created = 0
            for values in demo_clients():
                phone = values.pop("phone")
                created += Client.objects.get_or_create(phone=phone, defaults=values)[1]
            running = running_demo_mailing(now)
            if running is None:
                mailing = Mailing.objects.create(start_at=now, end_at=now + DEMO_DURATION, text=DEMO_TEXT)
        self.stdout.write(f"Demo clients: {created} created, {CLIENT_COUNT - created} already there.")
        if running is None:
            until = mailing.end_at.isoformat(timespec="minutes")
            self.stdout.write(
                f"Demo mailing {mailing.pk} created: to all clients, starting now, until {until}."
            )
        else:
            until = running.end_at.isoformat(timespec="minutes")
            self.stdout.write(f"Demo mailing {running.pk} is already running until {until}.")
