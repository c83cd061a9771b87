from django.db import models
from django.db.models import Q
from django.utils import timezone

from clients.models import Client
from mailings.models import Mailing

# last_error of a pending message deferred because its client's local window is closed; the
# statistics count these while their next attempt is ahead (mailings.selectors).
WAITING_FOR_WINDOW = "waiting for the client's local sending window"


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its next attempt
    SENDING = "sending", "Sending"  # claimed by a dispatcher until lease_until
    SENT = "sent", "Sent"  # accepted by the provider
    FAILED = "failed", "Failed"  # can never be sent (rejected, bad input, client gone)
    EXPIRED = "expired", "Expired"  # the mailing ended before it could be sent


class Message(models.Model):
    """One message of one mailing to one client; the row is the unit of work and its truth."""

    Status = MessageStatus
    FINAL_STATUSES = (Status.SENT, Status.FAILED, Status.EXPIRED)

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="messages")
    # A deleted client leaves its messages behind so that past mailings keep their statistics.
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, related_name="messages")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["mailing", "client"], name="message_once_per_mailing_client"),
            models.CheckConstraint(condition=Q(status__in=MessageStatus.values), name="message_status_valid"),
        ]
        indexes = [
            models.Index(fields=["mailing", "status"], name="message_mailing_status_idx"),
            models.Index(
                fields=["mailing", "next_attempt_at"],
                condition=Q(status=MessageStatus.PENDING),
                name="message_due_idx",
            ),
            models.Index(
                fields=["lease_until"], condition=Q(status=MessageStatus.SENDING), name="message_lease_idx"
            ),
            # Statistics count the messages waiting for their local window by index only.
            models.Index(
                fields=["mailing", "next_attempt_at"],
                condition=Q(status=MessageStatus.PENDING, last_error=WAITING_FOR_WINDOW),
                name="message_waiting_window_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES
