from django.db import models
from django.db.models import Q
from django.utils import timezone

from clients.models import Client
from mailing_service.lookups import AnyOf
from mailings.models import Mailing


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its next attempt
    SENDING = "sending", "Sending"  # claimed by a sender until lease_until
    SENT = "sent", "Sent"  # accepted by the provider
    FAILED = "failed", "Failed"  # can never be sent (rejected, bad input, client gone)
    EXPIRED = "expired", "Expired"  # the mailing ended before it could be sent
    # The request reached the provider but its answer never came back: cut by the mailing's end or
    # by a stopping worker. Not retried (that could send it twice), never counted as expired.
    UNKNOWN = "unknown", "Sent, answer unknown"
    # A provider with delivery receipts told us what became of a sent (or unknown) message; neither
    # ever changes again. A message of such a provider without a receipt stays `sent`.
    DELIVERED = "delivered", "Delivered to the phone"
    UNDELIVERED = "undelivered", "Not delivered to the phone"  # the provider's reason in last_error


class WaitingFor(models.TextChoices):
    """What a pending message waits for besides its next attempt's time, which is set to its end."""

    NOTHING = "", "Nothing"  # due at its next attempt (a new message, a retry)
    # Its client's local window is closed: next_attempt_at is the window's next opening. The
    # statistics count these while that opening is ahead (messages_app.selectors).
    WINDOW = "window", "The client's local sending window"


class Message(models.Model):
    """One message of one mailing to one client; the row is the unit of work and its truth."""

    Status = MessageStatus
    WaitingFor = WaitingFor
    FINAL_STATUSES = (
        Status.SENT,
        Status.FAILED,
        Status.EXPIRED,
        Status.UNKNOWN,
        Status.DELIVERED,
        Status.UNDELIVERED,
    )

    # No index of its own: the (mailing, client) unique constraint and the progress index both lead
    # with mailing_id, and each index on this table costs the fan-out time on every row.
    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="messages", db_index=False)
    # A deleted client leaves its messages behind so that past mailings keep their statistics.
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, related_name="messages")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A default in the database too, for rows written by SQL that does not name it (bench, scripts).
    waiting_for = models.CharField(
        max_length=16, choices=WaitingFor.choices, blank=True, default=WaitingFor.NOTHING, db_default=""
    )
    lease_until = models.DateTimeField(null=True, blank=True)
    # Which provider took it (its name; "default": the one PROVIDER_URL or PROVIDER_KIND configures)
    # and the provider's own id for it, if its answer gave one: receipts find the message by these.
    provider = models.CharField(max_length=32, blank=True, default="", db_default="")
    provider_message_id = models.CharField(max_length=64, blank=True, default="", db_default="")
    # When its provider's receipt said it reached the phone.
    delivered_at = models.DateTimeField(null=True, blank=True)
    # Set by each claim; a result is written only where the row still carries its claim's token,
    # so a sender that lost its claim (lease ran out, another sender took the row) changes nothing.
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    claimed_by = models.CharField(max_length=64, blank=True, editable=False, help_text="The last sender.")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["mailing", "client"], name="message_once_per_mailing_client"),
            models.CheckConstraint(condition=Q(status__in=MessageStatus.values), name="message_status_valid"),
        ]
        indexes = [
            # Counts by status, and the send rate (sent_at) of the progress, read from the index alone.
            models.Index(fields=["mailing", "status", "sent_at"], name="message_mailing_progress_idx"),
            models.Index(
                fields=["mailing", "next_attempt_at"],
                condition=Q(status=MessageStatus.PENDING),
                name="message_due_idx",
            ),
            models.Index(
                fields=["lease_until"], condition=Q(status=MessageStatus.SENDING), name="message_lease_idx"
            ),
            models.Index(
                fields=["claim_token"], condition=Q(status=MessageStatus.SENDING), name="message_claim_idx"
            ),
            # Statistics count the messages waiting for their local window by index only.
            models.Index(
                fields=["mailing", "next_attempt_at"],
                condition=Q(status=MessageStatus.PENDING, waiting_for=WaitingFor.WINDOW),
                name="message_waiting_window_idx",
            ),
            # A receipt naming the provider's own id finds its message; rows without one stay out.
            models.Index(
                fields=["provider", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="message_provider_id_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Message {self.pk} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATUSES


Message._meta.pk.register_lookup(AnyOf)  # id__any: the sender names ids by the hundred


class SenderSlot(models.Model):
    """One of a mailing's SENDERS_PER_MAILING places for a sender, held under a lease.

    A sender claims messages of a mailing only while it holds one of its slots; it renews the lease
    every second and gives the slot up when it stops. A dead sender's slot is free again once its
    lease has run out, so the bound holds through pauses, crashes and restarts alike.
    """

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="sender_slots")
    number = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["mailing", "number"], name="sender_slot_once_per_mailing"),
        ]
        indexes = [models.Index(fields=["holder"], name="sender_slot_holder_idx")]

    def __str__(self) -> str:
        return f"Slot {self.number} of mailing {self.mailing_id}"


class ProviderPause(models.Model):
    """Until when no sender of any worker may call the provider (breaker, refused token).

    In the database rather than the cache: raising it to the later of two ends is one atomic UPDATE
    with GREATEST on PostgreSQL and SQLite alike, and it survives a Redis restart.
    """

    provider = models.CharField(max_length=32, primary_key=True)
    paused_until = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.provider} paused until {self.paused_until:%H:%M:%S}"


class MessageTally(models.Model):
    """A change in how many messages of a mailing are in a status: the statistics' counts.

    Rows are appended by database triggers on the message table (migration 0006), in the
    transaction that changed the messages: on PostgreSQL one row per (mailing, status) a statement
    changed, on SQLite one per message. The count of a status is the sum of its rows, whose cost,
    unlike counting messages, does not grow with the mailing (docs/decisions/tallies-by-database-trigger.md).
    `message_tallies_fold` folds them into one row per (mailing, status) at each sweep.

    SQLite rebuilds a table to alter it and its triggers go with the old one: a migration that
    alters Message must create them again (test_tally checks they exist). After loading messages
    with triggers off (a data-only restore), `manage.py reconcile_message_tallies` repairs them.

    No foreign key: the rows of a deleted mailing's messages sum to zero and are folded away.
    """

    mailing_id = models.BigIntegerField()
    status = models.CharField(max_length=16)
    messages = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["mailing_id", "status"], name="message_tally_mailing_idx")]

    def __str__(self) -> str:
        return f"{self.messages:+} {self.status} in mailing {self.mailing_id}"
