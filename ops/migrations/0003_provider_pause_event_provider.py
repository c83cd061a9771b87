from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0002_idempotency_keys"),
    ]

    operations = [
        migrations.AddField(
            model_name="providerpauseevent",
            name="provider",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
    ]
