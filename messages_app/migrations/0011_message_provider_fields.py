import importlib

from django.db import migrations, models

tally = importlib.import_module("messages_app.migrations.0006_message_tally")


def recreate_sqlite_triggers(apps, schema_editor):
    """SQLite adds a NOT NULL column by rebuilding the table, which drops its triggers: the tally
    triggers are made again. PostgreSQL adds the column in place and keeps them."""
    if schema_editor.connection.vendor == "sqlite":
        tally.drop_triggers(apps, schema_editor)
        tally.create_triggers(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("messages_app", "0010_sender_heartbeat"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="provider",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
        migrations.AddField(
            model_name="message",
            name="provider_message_id",
            field=models.CharField(blank=True, db_default="", default="", max_length=64),
        ),
        migrations.RunPython(recreate_sqlite_triggers, recreate_sqlite_triggers),
    ]
