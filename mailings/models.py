from datetime import datetime

from django.db import models
from django.db.models import F, Q

from clients.models import Client, ClientQuerySet, validate_operator_code

from .window import LocalWindow

TEXT_MAX_LENGTH = 1000


class MailingQuerySet(models.QuerySet):
    def due_for_launch(self, now: datetime) -> "MailingQuerySet":
        """Mailings inside their window whose fan-out is neither finished nor held by a live launcher."""
        return self.filter(start_at__lte=now, end_at__gt=now, fanout_completed_at__isnull=True).filter(
            Q(fanout_lease_until__isnull=True) | Q(fanout_lease_until__lt=now)
        )

    def sendable(self, now: datetime) -> "MailingQuerySet":
        """Mailings whose messages may be sent now: launched and inside their window.

        The senders re-read this every second (`messages_app.dispatcher`): a mailing that leaves it
        stops being claimed for within a second or two and its unstarted claims go back to pending.
        Further conditions (a paused or cancelled state) belong here.
        """
        return self.filter(launched_at__isnull=False, start_at__lte=now, end_at__gt=now)


class Mailing(models.Model):
    start_at = models.DateTimeField(help_text="Sending starts at this moment.")
    end_at = models.DateTimeField(help_text="Nothing is sent from this moment on; unsent messages expire.")
    text = models.TextField(max_length=TEXT_MAX_LENGTH)
    filter_operator_code = models.CharField(
        max_length=3,
        blank=True,
        validators=[validate_operator_code],
        help_text="Only clients with this operator code; empty: any operator code.",
    )
    filter_tag = models.CharField(
        max_length=64, blank=True, help_text="Only clients with this tag; empty: any tag."
    )
    # Both or neither (mailing_local_window_both_or_neither); see mailings.window for the rules.
    local_window_start = models.TimeField(
        null=True,
        blank=True,
        help_text="Messages go out only from this time of day in each client's own timezone.",
    )
    local_window_end = models.TimeField(
        null=True,
        blank=True,
        help_text="...and only until this time of day; before the start: the window crosses midnight.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # Fan-out bookkeeping, written by the launcher only.
    launched_at = models.DateTimeField(null=True, blank=True, editable=False)
    fanout_cursor = models.BigIntegerField(
        default=0, editable=False, help_text="Id of the last client the fan-out has reached."
    )
    fanout_lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    fanout_completed_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = MailingQuerySet.as_manager()

    class Meta:
        ordering = ["-start_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(end_at__gt=F("start_at")), name="mailing_end_after_start"),
            models.CheckConstraint(condition=~Q(text=""), name="mailing_text_not_empty"),
            models.CheckConstraint(
                condition=Q(local_window_start__isnull=True, local_window_end__isnull=True)
                | (
                    Q(local_window_start__isnull=False, local_window_end__isnull=False)
                    & ~Q(local_window_start=F("local_window_end"))
                ),
                name="mailing_local_window_both_or_neither",
                violation_error_message="Set both ends of the local window (two different times) or neither.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["start_at"],
                condition=Q(fanout_completed_at__isnull=True),
                name="mailing_awaiting_launch_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"Mailing {self.pk} ({self.start_at:%Y-%m-%d %H:%M})"

    def is_active(self, now: datetime) -> bool:
        return self.start_at <= now < self.end_at

    @property
    def local_window(self) -> LocalWindow | None:
        """The daily window of the clients' local time the messages go out in; None: any time."""
        if self.local_window_start is None or self.local_window_end is None:
            return None
        return LocalWindow(self.local_window_start, self.local_window_end)

    @property
    def is_launched(self) -> bool:
        return self.launched_at is not None

    def recipients(self) -> ClientQuerySet:
        return Client.objects.matching(operator_code=self.filter_operator_code, tag=self.filter_tag)

    @property
    def audience_description(self) -> str:
        parts = []
        if self.filter_operator_code:
            parts.append(f"operator code {self.filter_operator_code}")
        if self.filter_tag:
            parts.append(f"tag {self.filter_tag!r}")
        return "clients with " + " and ".join(parts) if parts else "all clients"
