"""Runs the receipt server (`messages_app.receipt_server`) until SIGTERM or Ctrl-C."""

import redis.asyncio as aioredis
import uvloop
from aiohttp import web
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messages_app.receipt_server import QueueBatcher, receipt_app
from messages_app.receipts import QUEUE_KEY


class Command(BaseCommand):
    help = "Takes providers' delivery receipts at /receipts/<provider>/ and queues them in RECEIPT_QUEUE_URL."

    def add_arguments(self, parser):
        parser.add_argument(
            "--bind", default=settings.RECEIPT_SERVER_BIND, help="host:port (default: RECEIPT_SERVER_BIND)"
        )

    def handle(self, *args, bind: str, **options):
        if not settings.RECEIPT_QUEUE_URL:
            raise CommandError("the receipt server queues receipts: set RECEIPT_QUEUE_URL (a Redis URL)")
        host, _, port = bind.rpartition(":")
        if not host or not port.isdigit():
            raise CommandError(f"--bind wants host:port, not {bind!r}")

        async def app() -> web.Application:
            client = aioredis.Redis.from_url(
                settings.RECEIPT_QUEUE_URL, socket_timeout=5, socket_connect_timeout=5
            )
            application = receipt_app(secrets=settings.RECEIPT_SECRETS, queue=QueueBatcher(client, QUEUE_KEY))

            async def close_client(_: web.Application) -> None:
                await client.aclose()

            application.on_cleanup.append(close_client)
            return application

        self.stdout.write(f"receipt server on http://{host}:{port}/receipts/<provider>/")
        # uvloop: the server's time is its event loop's, and uvloop's costs less per request.
        web.run_app(
            app(), host=host, port=int(port), loop=uvloop.new_event_loop(), access_log=None, print=None
        )
