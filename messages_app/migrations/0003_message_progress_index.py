from django.db import migrations, models


class Migration(migrations.Migration):
    """The (mailing, status) index grows sent_at, so that the progress's send rate is counted from
    the index alone; the new one is built before the old one goes, so counts never lose theirs."""

    dependencies = [
        ("messages_app", "0002_claim_tokens_slots_pause_unknown"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["mailing", "status", "sent_at"], name="message_mailing_progress_idx"),
        ),
        migrations.RemoveIndex(
            model_name="message",
            name="message_mailing_status_idx",
        ),
    ]
