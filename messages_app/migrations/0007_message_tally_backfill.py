"""Counts the messages that were there before the tally triggers (0006) into the tallies.

Not atomic and without a lock: `message_tallies_reconcile` is one statement that adds, per (mailing,
status), the messages minus the tallies as one snapshot sees them, so sending goes on meanwhile and
whatever changes after that snapshot is tallied by the triggers.
"""

from django.db import migrations


def reconcile(apps, schema_editor):
    # The service's statement (plain SQL on the two tables): if it ever changes shape, freeze this
    # one's copy here.
    from messages_app.services import message_tallies_reconcile

    message_tallies_reconcile(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messages_app", "0006_message_tally"),
    ]

    operations = [migrations.RunPython(reconcile, migrations.RunPython.noop)]
