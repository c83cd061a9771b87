import importlib

from django.db import migrations, models

tally = importlib.import_module("messages_app.migrations.0006_message_tally")


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
        migrations.RunPython(tally.recreate_sqlite_triggers, tally.recreate_sqlite_triggers),
        migrations.RunPython(copy_recipients, migrations.RunPython.noop),
    ]
