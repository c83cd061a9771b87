from django.core.management.base import BaseCommand

from messages_app.services import message_tallies_reconcile


class Command(BaseCommand):
    help = (
        "Make the statistics' message tallies agree with the messages again, after messages were "
        "loaded with the database's triggers off (a data-only restore, loaddata of both tables). "
        "Safe while the service runs: one statement, writers are not locked out."
    )

    def handle(self, *args, **options):
        corrected = message_tallies_reconcile()
        self.stdout.write(f"{corrected} (mailing, status) counts corrected")
