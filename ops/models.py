"""What operations needs to remember beyond Prometheus, which forgets on restart: the daily report's
claim, the history of provider pauses, attempts counted by hour (the report's error rate), and the
API's idempotency keys."""

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class DailyReport(models.Model):
    """One row per local day: the claim that makes the daily email go out once, whatever fires it."""

    day = models.DateField(unique=True)
    # A sender holds the claim until then; a crashed one's claim runs out and the next beat retries.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True)

    class Meta:
        ordering = ["-day"]

    def __str__(self) -> str:
        return f"Daily report {self.day} ({'sent' if self.sent_at else 'not sent'})"


class ProviderPauseEvent(models.Model):
    """A pause of one provider (circuit breaker or refused token) as a sender published it: the
    history the daily report reads (messages_app.ProviderPause holds only the pause in force)."""

    started_at = models.DateTimeField(db_index=True)
    until = models.DateTimeField()
    provider = models.CharField(max_length=32, blank=True, default="", db_default="")

    class Meta:
        ordering = ["started_at"]

    def __str__(self) -> str:
        return f"Pause from {self.started_at:%Y-%m-%d %H:%M:%S} to {self.until:%H:%M:%S}"


class ProviderAttemptsHourly(models.Model):
    """Send attempts written back in one UTC hour, by outcome: a row per (hour, outcome)."""

    hour = models.DateTimeField()
    outcome = models.CharField(max_length=16)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "outcome"], name="provider_attempts_once_per_hour_outcome"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H}:00 {self.outcome} {self.count}"


class IdempotencyKey(models.Model):
    """An `Idempotency-Key` a user sent with a POST, and the first answer to it (ops.idempotency):
    no status yet while that request runs. Kept IDEMPOTENCY_KEY_HOURS, then purged."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path, query and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(db_index=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    body = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_once_per_user")]

    def __str__(self) -> str:
        return f"Idempotency key of user {self.user_id} ({self.status_code or 'in progress'})"
