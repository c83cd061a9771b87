"""Prints the URL to give Kannel's sms-service (its get-url) for a provider's replies."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from messages_app.receipts import receipt_secret
from messages_app.sending.receipts import reply_url


class Command(BaseCommand):
    help = "The get-url for Kannel's sms-service: replies asking to stop opt their sender out."

    def add_arguments(self, parser):
        parser.add_argument("provider", help="The provider's name, as in RECEIPT_SECRETS.")

    def handle(self, *args, provider: str, **options):
        secret = receipt_secret(provider)
        if secret is None:
            raise CommandError(f"{provider!r} has no secret in RECEIPT_SECRETS")
        self.stdout.write(reply_url(settings.RECEIPT_BASE_URL, provider, secret))
