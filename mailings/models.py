from collections.abc import Iterable
from datetime import datetime, time

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Exists, F, OuterRef, Q, Value
from django.utils import timezone

from accounts.roles import EXEMPT_FROM_CAP
from clients.models import TAG_MAX_LENGTH, Client, ClientQuerySet, validate_operator_code

from .placeholders import Template, parse
from .segments import Segments, sms_segments
from .window import LocalWindow

TEXT_MAX_LENGTH = 1000
FILTER_VALUES_MAX = 100  # values in one multi-value filter


def _validate_list(value, check) -> None:
    if not isinstance(value, list) or len(value) > FILTER_VALUES_MAX:
        raise ValidationError(f"Enter a list of at most {FILTER_VALUES_MAX} values.")
    for item in value:
        if not isinstance(item, str):
            raise ValidationError("Every value must be a string.")
        check(item)


def validate_operator_codes(value) -> None:
    _validate_list(value, validate_operator_code)


def _validate_tag(tag: str) -> None:
    if not tag or len(tag) > TAG_MAX_LENGTH:
        raise ValidationError(f"A tag is 1 to {TAG_MAX_LENGTH} characters.")


def validate_tags(value) -> None:
    _validate_list(value, _validate_tag)


class MailingState(models.TextChoices):
    DRAFT = "draft", "Draft"  # saved to edit and try; launches only when an operator launches it
    SCHEDULED = "scheduled", "Scheduled"  # start not reached; nothing sent yet
    RUNNING = "running", "Running"  # inside its window, messages left to send
    PAUSED = "paused", "Paused"  # an operator paused it; its unsent messages wait, pending
    CANCELLED = "cancelled", "Cancelled"  # an operator cancelled it; final, unsent messages expired
    FINISHED = "finished", "Finished"  # its end has passed, or it is launched and nothing is left


# Messages a mailing may still send; a mailing without any, once launched, is finished.
UNSENT_STATUSES = ("pending", "sending")
# Messages a resend sends again.
RESEND_STATUSES = ("failed", "expired")


class MailingQuerySet(models.QuerySet):
    def due_for_launch(self, now: datetime) -> "MailingQuerySet":
        """Mailings inside their window whose fan-out is neither finished nor held by a live launcher."""
        return self.filter(
            start_at__lte=now,
            end_at__gt=now,
            fanout_completed_at__isnull=True,
            cancelled_at__isnull=True,
            draft=False,
        ).filter(Q(fanout_lease_until__isnull=True) | Q(fanout_lease_until__lt=now))

    def sendable(self, now: datetime) -> "MailingQuerySet":
        """Mailings whose messages may be sent now: launched, inside their window, neither paused
        nor cancelled.

        The senders re-read this every second (`messages_app.selectors.mailings_to_send`): a mailing
        that leaves it (a pause, a cancel, its end) stops being claimed for within a second or two
        and its unstarted claims go back to pending.
        """
        return self.filter(
            launched_at__isnull=False,
            start_at__lte=now,
            end_at__gt=now,
            paused_at__isnull=True,
            cancelled_at__isnull=True,
        )

    def ends(self, ids: Iterable[int]) -> dict[int, datetime]:
        """Each given mailing's end, by id."""
        return dict(self.filter(id__in=ids).values_list("id", "end_at"))

    def with_unsent(self) -> "MailingQuerySet":
        """Annotates `has_unsent` (one EXISTS per row on the (mailing, status) index), which
        Mailing.state needs to tell a launched mailing with nothing left apart from a running one."""
        message = apps.get_model("messages_app", "Message")  # messages_app depends on this app
        unsent = message.objects.filter(mailing=OuterRef("pk"), status__in=UNSENT_STATUSES)
        return self.annotate(has_unsent=Exists(unsent))

    def in_state(self, state: str, now: datetime) -> "MailingQuerySet":
        """Mailings whose `state` is this one at `now`; the SQL twin of Mailing.state_at."""
        ended = Q(end_at__lte=now) | Q(fanout_completed_at__isnull=False, has_unsent=False)
        live = Q(cancelled_at__isnull=True, draft=False) & ~ended
        queryset = self if "has_unsent" in self.query.annotations else self.with_unsent()
        if state == MailingState.DRAFT:
            return queryset.filter(draft=True, cancelled_at__isnull=True)
        if state == MailingState.CANCELLED:
            return queryset.filter(cancelled_at__isnull=False)
        if state == MailingState.FINISHED:
            return queryset.filter(ended, cancelled_at__isnull=True, draft=False)
        if state == MailingState.PAUSED:
            return queryset.filter(live, paused_at__isnull=False)
        if state == MailingState.SCHEDULED:
            return queryset.filter(live, paused_at__isnull=True, start_at__gt=now)
        if state == MailingState.RUNNING:
            return queryset.filter(live, paused_at__isnull=True, start_at__lte=now)
        raise ValueError(f"Unknown mailing state {state!r}")


class Mailing(models.Model):
    start_at = models.DateTimeField(help_text="Sending starts at this moment.")
    end_at = models.DateTimeField(help_text="Nothing is sent from this moment on; unsent messages expire.")
    text = models.TextField(max_length=TEXT_MAX_LENGTH)
    # False only for mailings saved before texts had placeholders: theirs go out verbatim, braces
    # and all; every text saved since is a template (mailings.placeholders).
    text_is_template = models.BooleanField(default=True, db_default=False, editable=False)
    draft = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Never launched while a draft: edited and tried freely, then launched by an operator.",
    )
    filter_operator_code = models.CharField(
        max_length=3,
        blank=True,
        validators=[validate_operator_code],
        help_text="Only clients with this operator code; empty: any operator code.",
    )
    filter_tag = models.CharField(
        max_length=TAG_MAX_LENGTH, blank=True, help_text="Only clients with this tag; empty: any tag."
    )
    # Several values: a client matches with any of them (and any of filter_tag / filter_tags).
    # JSON lists rather than a related table: SQLite and PostgreSQL both store them, and the
    # fan-out turns them into one `IN (...)` on the clients' (operator_code, tag) index.
    filter_operator_codes = models.JSONField(
        default=list,
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        validators=[validate_operator_codes],
        help_text="Clients with any of these operator codes (and filter_operator_code).",
    )
    filter_tags = models.JSONField(
        default=list,
        db_default=Value([], output_field=models.JSONField()),
        blank=True,
        validators=[validate_tags],
        help_text="Clients with any of these tags (and filter_tag).",
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
    cap_exempt = models.BooleanField(
        default=False,
        help_text="Its messages are not held by CLIENT_MAX_MESSAGES_PER_DAY (service messages); they "
        "still count towards it. Set by operators with the exempt_from_cap permission.",
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
    # A resend goes to the clients whose messages of that mailing failed or expired, not by filter.
    # No database constraint: once that mailing is deleted with its messages, a resend not yet
    # launched reaches nobody (rather than everybody, as an emptied filter would).
    resend_of = models.ForeignKey(
        "self",
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        blank=True,
        editable=False,
        related_name="resends",
    )
    audience_size = models.PositiveIntegerField(
        null=True, blank=True, editable=False, help_text="Messages the fan-out created: its audience."
    )
    audience_opted_out = models.PositiveIntegerField(
        null=True, blank=True, editable=False, help_text="Matching clients the fan-out left out: opted out."
    )

    # Operators' actions (mailings.services; cancel: messages_app.services): set while paused; set
    # once and for good when cancelled.
    paused_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancelled_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = MailingQuerySet.as_manager()

    class Meta:
        ordering = ["-start_at", "-id"]
        permissions = [(EXEMPT_FROM_CAP, "Can exempt a mailing from the frequency cap")]
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

    def state_at(self, now: datetime) -> MailingState:
        """The first rule that holds: cancelled; draft; finished (end passed, or launched with nothing
        left to send); paused; scheduled (start not reached); running."""
        if self.cancelled_at is not None:
            return MailingState.CANCELLED
        if self.draft:
            return MailingState.DRAFT
        if now >= self.end_at or (self.fanout_completed_at is not None and not self.has_unsent):
            return MailingState.FINISHED
        if self.paused_at is not None:
            return MailingState.PAUSED
        if now < self.start_at:
            return MailingState.SCHEDULED
        return MailingState.RUNNING

    def may_be_deleted(self, now: datetime) -> bool:
        """Never launched (no messages), or finished or cancelled: its messages are history then."""
        return not self.is_launched or self.state_at(now) in (MailingState.FINISHED, MailingState.CANCELLED)

    @property
    def state(self) -> MailingState:
        return self.state_at(timezone.now())

    @property
    def has_unsent(self) -> bool:
        """Set in bulk by MailingQuerySet.with_unsent; asked of the database when it was not."""
        if "has_unsent" not in self.__dict__:
            self.__dict__["has_unsent"] = self.messages.filter(status__in=UNSENT_STATUSES).exists()
        return self.__dict__["has_unsent"]

    @has_unsent.setter
    def has_unsent(self, value: bool) -> None:
        self.__dict__["has_unsent"] = value

    @property
    def local_window(self) -> LocalWindow | None:
        """The daily window of the clients' local time the messages go out in; None: any time."""
        if self.local_window_start is None or self.local_window_end is None:
            return None
        return LocalWindow(self.local_window_start, self.local_window_end)

    @property
    def send_at_any_hour(self) -> bool:
        return self.local_window is None

    @property
    def is_launched(self) -> bool:
        return self.launched_at is not None

    @property
    def template(self) -> Template:
        """The text as each client's is rendered from it. Raises TemplateError for a template text
        saved without validation (the API and the admin validate it)."""
        return parse(self.text) if self.text_is_template else Template.verbatim(self.text)

    @property
    def segments(self) -> Segments:
        """Of the text as a client without attributes gets it: every placeholder's fallback."""
        return sms_segments(self.template.render({}))

    @property
    def operator_codes(self) -> list[str]:
        """Every operator code of the filter, from the one-value and the list field."""
        return _merged(self.filter_operator_code, self.filter_operator_codes)

    @property
    def tags(self) -> list[str]:
        return _merged(self.filter_tag, self.filter_tags)

    def recipients(self) -> ClientQuerySet:
        if self.resend_of_id is not None:
            return Client.objects.filter(
                messages__mailing_id=self.resend_of_id, messages__status__in=RESEND_STATUSES
            )
        return Client.objects.matching(operator_codes=self.operator_codes, tags=self.tags)

    @property
    def audience_description(self) -> str:
        if self.resend_of_id is not None:
            return f"clients whose messages of mailing {self.resend_of_id} failed or expired"
        return describe_audience(operator_codes=self.operator_codes, tags=self.tags)


def default_local_window() -> LocalWindow | None:
    """DEFAULT_LOCAL_WINDOW (checked at startup by mailings.apps)."""
    return LocalWindow.parse(settings.DEFAULT_LOCAL_WINDOW)


class AnyHourWithWindow(ValueError):
    """send_at_any_hour together with a window."""


def window_to_save(
    start: time | None, end: time | None, *, any_hour: bool, wants_default: bool
) -> tuple[time | None, time | None, bool]:
    """The local window a mailing is saved with, for the API and the admin alike: none with `any_hour`
    (AnyHourWithWindow when a window is given too); DEFAULT_LOCAL_WINDOW when the caller asks for the
    default (a new mailing that says nothing of its window) and no window is given; else as given.
    The third value: whether it is the default."""
    if any_hour:
        if start is not None or end is not None:
            raise AnyHourWithWindow("Not with a local window: sending at any hour has no window.")
        return None, None, False
    default = default_local_window() if wants_default and start is None and end is None else None
    if default is None:
        return start, end, False
    return default.start, default.end, True


def _merged(one: str, many: list[str]) -> list[str]:
    return sorted({*many, one} - {""})


def describe_audience(*, operator_codes: list[str], tags: list[str]) -> str:
    parts = []
    if operator_codes:
        parts.append(f"operator code {' or '.join(operator_codes)}")
    if tags:
        parts.append(f"tag {' or '.join(map(repr, tags))}")
    return "clients with " + " and ".join(parts) if parts else "all clients"


class TestSend(models.Model):
    """One try of a mailing's text on one client, sent now, outside the mailing's messages and
    statistics; the row is the truth the API waits on, and the audit trail of who tried what."""

    __test__ = False  # not a pytest test class, whatever its name

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"  # accepted by the provider
        FAILED = "failed", "Failed"  # refused, or no answer: not retried, the operator sees why

    # Test sends go to the provider under ids of their own, far above any message id.
    PROVIDER_ID_OFFSET = 2**62

    mailing = models.ForeignKey(Mailing, on_delete=models.CASCADE, related_name="test_sends")
    client = models.ForeignKey(Client, on_delete=models.SET_NULL, null=True, related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    detail = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"Test send {self.pk} of mailing {self.mailing_id} ({self.status})"

    @property
    def provider_id(self) -> int:
        return self.PROVIDER_ID_OFFSET + self.pk
