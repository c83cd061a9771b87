import django.core.validators
import providers.models
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Provider",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "name",
                    models.SlugField(
                        help_text="Names the provider on every message it took, its pause and its weight history.",
                        max_length=32,
                        unique=True,
                    ),
                ),
                (
                    "transport",
                    models.CharField(
                        choices=[("probe", "Probe API (docs/provider-api.md)")],
                        default="probe",
                        max_length=16,
                    ),
                ),
                ("url", models.URLField(help_text="Base URL of the provider's API.")),
                (
                    "credentials_env",
                    models.CharField(
                        help_text="Name of the environment variable holding the provider's token in the workers; the token itself is never stored.",
                        max_length=64,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[A-Z][A-Z0-9_]{0,63}$",
                                "Enter the name of an environment variable: A-Z, 0-9 and _.",
                            )
                        ],
                    ),
                ),
                (
                    "weight",
                    models.PositiveIntegerField(
                        default=100,
                        help_text="Resting share of the traffic, relative to the other providers' weights.",
                        validators=[django.core.validators.MaxValueValidator(10000)],
                    ),
                ),
                (
                    "rate_limit",
                    models.FloatField(
                        blank=True,
                        help_text="Sends per second the account allows, for all workers together; empty: none.",
                        null=True,
                        validators=[django.core.validators.MinValueValidator(0.1)],
                    ),
                ),
                (
                    "operators_only",
                    models.JSONField(
                        blank=True, default=list, validators=[providers.models.validate_operator_codes]
                    ),
                ),
                (
                    "operators_excluded",
                    models.JSONField(
                        blank=True, default=list, validators=[providers.models.validate_operator_codes]
                    ),
                ),
                ("enabled", models.BooleanField(default=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="ProviderWeightChange",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("provider", models.CharField(max_length=32)),
                ("at", models.DateTimeField(db_index=True)),
                ("weight_from", models.PositiveIntegerField()),
                ("weight_to", models.PositiveIntegerField()),
                ("reason", models.CharField(max_length=255)),
                ("holder", models.CharField(help_text="The sender that made the change.", max_length=64)),
            ],
            options={
                "ordering": ["-at", "-id"],
            },
        ),
    ]
