import importlib

from django.db import migrations, models

tally = importlib.import_module("messages_app.migrations.0006_message_tally")


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
        migrations.RunPython(tally.recreate_sqlite_triggers, tally.recreate_sqlite_triggers),
    ]
