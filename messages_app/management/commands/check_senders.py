"""The worker's health check (docker-compose, Kubernetes): are this machine's senders alive?"""

import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from messages_app.services import senders_live


class Command(BaseCommand):
    help = (
        "Exit 0 when at least one sender of this host (or --host) was seen within a lease, 1 when none "
        "was; always 0 with SENDER_ENABLED=false."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default=socket.gethostname(), help="the worker's host name")

    def handle(self, *args, host: str, **options):
        if not settings.SENDER_ENABLED:
            self.stdout.write("senders disabled (SENDER_ENABLED=false)")
            return
        live = senders_live(now=timezone.now(), host=host)
        if not live:
            raise CommandError(f"no sender alive on {host}")
        self.stdout.write(f"{live} sender(s) alive on {host}")
