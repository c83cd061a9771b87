from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations() -> int:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


class Command(BaseCommand):
    help = (
        "For local runs (make run): make var/ and the local secret key (ensure_local_state), migrate "
        "the database, then seed_demo. One command rather than three saves starts of Django, seconds "
        "on a busy machine."
    )

    def handle(self, *args, **options):
        call_command("ensure_local_state")
        pending = pending_migrations()
        # Quiet: migrate's own lines are two per migration, over a hundred in a fresh clone.
        call_command("migrate", interactive=False, verbosity=0, stderr=self.stderr)
        if pending:
            self.stdout.write(f"Database: {pending} migrations applied.")
        else:
            self.stdout.write("Database: up to date, no migration to apply.")
        call_command("seed_demo", stdout=self.stdout, stderr=self.stderr)
