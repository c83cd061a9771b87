"""Message.mailing loses its index of its own (the unique (mailing, client) constraint and the
progress index both lead with mailing_id).

Not AlterField in the database: for a changed db_index Django drops and re-adds the foreign key,
and re-adding it checks every message under a lock. Only the index goes, concurrently on PostgreSQL
so that sending goes on meanwhile.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX = "messages_app_message_mailing_id_165489f9"


def _concurrently(schema_editor) -> str:
    return " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""


def drop_index(apps, schema_editor):
    schema_editor.execute(f"DROP INDEX{_concurrently(schema_editor)} IF EXISTS {INDEX}")


def create_index(apps, schema_editor):
    schema_editor.execute(
        f"CREATE INDEX{_concurrently(schema_editor)} IF NOT EXISTS {INDEX} ON messages_app_message (mailing_id)"
    )


class Migration(migrations.Migration):
    atomic = False  # CREATE / DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("mailings", "0007_mailing_local_sending_window"),
        ("messages_app", "0004_message_waiting_window_idx"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="mailing",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="messages",
                        to="mailings.mailing",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_index, create_index)],
        ),
    ]
