import importlib

from django.db import migrations, models

tally = importlib.import_module("messages_app.migrations.0006_message_tally")


def recreate_sqlite_triggers(apps, schema_editor):
    """SQLite adds a NOT NULL column by rebuilding the table, which drops its triggers: the tally
    triggers are made again. PostgreSQL adds the column in place and keeps them."""
    if schema_editor.connection.vendor == "sqlite":
        tally.drop_triggers(apps, schema_editor)
        tally.create_triggers(apps, schema_editor)


def copy_recipients(apps, schema_editor):
    """Messages made before the copy take their client's phone; those whose client is gone stay empty."""
    Message = apps.get_model("messages_app", "Message")
    Client = apps.get_model("clients", "Client")
    phone = Client.objects.filter(pk=models.OuterRef("client_id")).values("phone")[:1]
    Message.objects.filter(client__isnull=False).update(phone=models.Subquery(phone))


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0003_view_phone_permission"),
        ("messages_app", "0008_message_waiting_for"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="phone",
            field=models.CharField(blank=True, db_default="", max_length=11),
        ),
        migrations.AddField(
            model_name="message",
            name="unanswered",
            field=models.BooleanField(db_default=False, default=False),
        ),
        migrations.RunPython(recreate_sqlite_triggers, recreate_sqlite_triggers),
        migrations.RunPython(copy_recipients, migrations.RunPython.noop),
    ]
