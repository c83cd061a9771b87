"""The index a provider's delivery speed is read from: concurrently on PostgreSQL, so that sending
goes on while it is built over every message."""

from django.db import migrations, models

INDEX = models.Index(
    condition=models.Q(("status__in", ["sent", "delivered"])),
    fields=["provider", "sent_at", "delivered_at"],
    name="message_delivery_speed_idx",
)


def _concurrently(schema_editor) -> dict:
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


def create_index(apps, schema_editor):
    schema_editor.add_index(apps.get_model("messages_app", "Message"), INDEX, **_concurrently(schema_editor))


def drop_index(apps, schema_editor):
    schema_editor.remove_index(
        apps.get_model("messages_app", "Message"), INDEX, **_concurrently(schema_editor)
    )


class Migration(migrations.Migration):
    atomic = False  # CREATE / DROP INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("messages_app", "0013_message_receipts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.AddIndex(model_name="message", index=INDEX)],
            database_operations=[migrations.RunPython(create_index, drop_index)],
        ),
    ]
