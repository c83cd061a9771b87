from django.db import models
from django.db.models import Q
from django.utils import timezone

from clients.models import Client, mask_phone
from mailing_service.lookups import AnyOf
from mailings.models import Mailing


class MessageStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting for its next attempt
    SENDING = "sending", "Sending"  # claimed by a sender until lease_until
    SENT = "sent", "Sent"  # accepted by the provider
    FAILED = "failed", "Failed"  # can never be sent (rejected, bad input, client gone)
    EXPIRED = "expired", "Expired"  # the mailing ended before it could be sent
    # The request may have reached the provider but its answer never came back: cut by the mailing's
    # end or by a stopping worker, a timed-out attempt never confirmed, or a dead sender's claim
    # (SENDER_LOST_CLAIMS=unknown). Not retried (that could send it twice), never counted as expired.
    UNKNOWN = "unknown", "Sent, answer unknown"
    # Its phone is on the opt-out list (clients.OptOut): never sent, whatever its mailing.
    OPTED_OUT = "opted_out", "Opted out"
    # A provider with delivery receipts told us what became of a sent (or unknown) message; neither
    # ever changes again. A message of such a provider without a receipt stays `sent`.
    DELIVERED = "delivered", "Delivered to the phone"
    UNDELIVERED = "undelivered", "Not delivered to the phone"  # the provider's reason in last_error


# What the frequency cap counts: messages in flight and those the provider took, whatever their
# receipt said since.
CAP_COUNTED = [MessageStatus.SENDING, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED]

# Whose delivery speed tells (selectors.delivery_speeds): delivered, or still awaiting the receipt.
# An undelivered receipt keeps no time, so it tells nothing of the speed.
DELIVERY_TIMED = [MessageStatus.SENT, MessageStatus.DELIVERED]


class WaitingFor(models.TextChoices):
    """What a pending message waits for besides its next attempt's time, which is set to its end."""

    NOTHING = "", "Nothing"  # due at its next attempt (a new message, a retry)
    # Its client's local window is closed: next_attempt_at is the window's next opening. The
    # statistics count these while that opening is ahead (messages_app.selectors).
    WINDOW = "window", "The client's local sending window"
    # Its client got CLIENT_MAX_MESSAGES_PER_DAY messages in the last 24 hours: next_attempt_at is
    # when the oldest of them leaves those 24 hours. Expired at the mailing's end with CAP_ERROR.
    CAP = "cap", "The frequency cap"


# The last_error of a message that expired waiting for the frequency cap.
CAP_ERROR = "frequency cap reached"


class Message(models.Model):
    """One message of one mailing to one client; the row is the unit of work and its truth."""

    Status = MessageStatus
    WaitingFor = WaitingFor
    FINAL_STATUSES = (
        Status.SENT,
        Status.FAILED,
        Status.EXPIRED,
        Status.UNKNOWN,
        Status.OPTED_OUT,
        Status.DELIVERED,
        Status.UNDELIVERED,
    )

    # No index of its own: the (mailing, client) unique constraint and the progress index both lead
    # with mailing_id, and each index on this table costs the fan-out time on every row.
    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="messages", db_index=False)
    # A deleted client leaves its messages behind so that past mailings keep their statistics.
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, related_name="messages")
    # The recipient, copied at fan-out and sent to: deleting or renumbering the client later leaves
    # the record of whom it went to as it was. Empty only for messages older than the copy whose
    # client was already deleted.
    phone = models.CharField(max_length=11, blank=True, db_default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=255, blank=True)
    # Some attempt was cut by its own timeout: it may have reached the provider and been accepted.
    # Such a message is never counted expired or plainly failed: unconfirmed, it ends `unknown`.
    unanswered = models.BooleanField(default=False, db_default=False)
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
    # Who took it (the provider's name, providers.Provider.name) and the provider's own id for it.
    provider = models.CharField(max_length=32, blank=True, default="", db_default="")
    provider_message_id = models.CharField(max_length=64, blank=True, default="", db_default="")

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
            # The frequency cap: a client's messages sent in the last 24 hours, and those in flight.
            models.Index(
                fields=["client", "sent_at"],
                condition=Q(status__in=CAP_COUNTED),
                name="message_client_recent_idx",
            ),
            # A provider's recent delivery speed, read from the index alone (delivered_at is null
            # exactly for those still sent).
            models.Index(
                fields=["provider", "sent_at", "delivered_at"],
                condition=Q(status__in=DELIVERY_TIMED),
                name="message_delivery_speed_idx",
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
    def masked_phone(self) -> str:
        return mask_phone(self.phone)

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


class SenderHeartbeat(models.Model):
    """A running sender, renewed every second: live while `seen_at` is within a lease
    (SENDER_LEASE_SECONDS). Read by the readiness check, the metrics and `manage.py check_senders`;
    a stopping sender removes its row, the sweeper those of senders long dead."""

    holder = models.CharField(max_length=64, primary_key=True)  # host:pid:random (senders.sender_holder)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"Sender {self.holder} seen at {self.seen_at:%H:%M:%S}"


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
