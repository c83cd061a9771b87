"""Imports a CSV file of clients from the shell, as the API's import does, without its row cap.

For files larger than the API takes (CLIENT_IMPORT_MAX_BYTES, CLIENT_IMPORT_MAX_ROWS): the rows are
read as a stream and written in batches, so memory does not grow with the file.
"""

import json
from dataclasses import asdict

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from clients.services import ImportBatchFailed, ImportRefused, clients_import


class Command(BaseCommand):
    help = (
        "Creates or updates clients from a CSV file "
        "(header: phone, any of operator_code, tag, timezone and attr_<name> personal fields)."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file")
        parser.add_argument("--user", required=True, help="username the audit lines name")

    def handle(self, *args, path, user, **options):
        try:
            importer = get_user_model().objects.get_by_natural_key(user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {user!r}.") from None
        with open(path, "rb") as file:
            try:
                report = clients_import(file=file, user=importer, max_rows=None)
            except (ImportRefused, ImportBatchFailed) as error:
                raise CommandError(str(error)) from error
        self.stdout.write(json.dumps(asdict(report), indent=2))
