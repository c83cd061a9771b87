from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ops", "0001_operations_records"),
    ]

    operations = [
        migrations.AddField(
            model_name="providerpauseevent",
            name="provider",
            field=models.CharField(blank=True, db_default="", default="", max_length=32),
        ),
    ]
