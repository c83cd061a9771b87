"""The SMS providers messages go out through, as data: where, how, how much, and for which operators.

A provider's secret is never stored: `credentials_env` names the environment variable (or the file
of a mounted secret, read into the environment) that holds it in the worker's environment.
"""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from clients.models import validate_operator_code

# The provider a deployment without any enabled Provider row sends through: PROVIDER_URL and
# PROVIDER_TOKEN of the settings.
SETTINGS_PROVIDER = "default"

validate_env_name = RegexValidator(
    r"^[A-Z][A-Z0-9_]{0,63}$", "Enter the name of an environment variable: A-Z, 0-9 and _."
)


def validate_operator_codes(value) -> None:
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise ValidationError("Enter a list of 3-digit operator codes.")
    for code in value:
        validate_operator_code(code)
    if len(set(value)) != len(value):
        raise ValidationError("An operator code is listed twice.")


class TransportKind(models.TextChoices):
    PROBE = "probe", "Probe API (docs/provider-api.md)"
    # Its credentials variable holds "username:password"; it needs a secret in RECEIPT_SECRETS.
    KANNEL = "kannel", "Kannel's HTTP sendsms, with delivery receipts"


class Provider(models.Model):
    name = models.SlugField(
        max_length=32,
        unique=True,
        help_text="Names the provider on every message it took, its pause and its weight history.",
    )
    transport = models.CharField(max_length=16, choices=TransportKind.choices, default=TransportKind.PROBE)
    url = models.URLField(help_text="Base URL of the provider's API.")
    credentials_env = models.CharField(
        max_length=64,
        validators=[validate_env_name],
        help_text="Name of the environment variable holding the provider's token in the workers; "
        "the token itself is never stored.",
    )
    weight = models.PositiveIntegerField(
        default=100,
        validators=[MaxValueValidator(10_000)],
        help_text="Resting share of the traffic, relative to the other providers' weights.",
    )
    rate_limit = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1)],
        help_text="Sends per second the account allows, for all workers together; empty: none.",
    )
    # Operator codes (3 digits): when `operators_only` is not empty, only these; never the excluded.
    operators_only = models.JSONField(default=list, blank=True, validators=[validate_operator_codes])
    operators_excluded = models.JSONField(default=list, blank=True, validators=[validate_operator_codes])
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        both = set(self.operators_only or ()) & set(self.operators_excluded or ())
        if both:
            raise ValidationError(
                {"operators_excluded": f"Listed in operators_only too: {', '.join(sorted(both))}."}
            )


class ProviderWeightChange(models.Model):
    """A change of a provider's weight by a sender (errors or slow delivery moved traffic away, or
    it drifted back), with its reason: what the console shows."""

    provider = models.CharField(max_length=32)
    at = models.DateTimeField(db_index=True)
    weight_from = models.PositiveIntegerField()
    weight_to = models.PositiveIntegerField()
    reason = models.CharField(max_length=255)
    holder = models.CharField(max_length=64, help_text="The sender that made the change.")

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.provider} {self.weight_from} -> {self.weight_to} at {self.at:%H:%M:%S}"
