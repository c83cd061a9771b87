import functools
import unicodedata
import zoneinfo
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q, Value
from django.utils.deconstruct import deconstructible

from .attributes import attribute_errors

PHONE_PATTERN = r"^7[0-9]{10}$"
OPERATOR_CODE_PATTERN = r"^[0-9]{3}$"
TAG_MAX_LENGTH = 64

validate_phone = RegexValidator(PHONE_PATTERN, "Enter 11 digits starting with 7: 7XXXXXXXXXX.")
validate_operator_code = RegexValidator(OPERATOR_CODE_PATTERN, "Enter a 3-digit mobile operator code.")
ECHOED_MAX_LENGTH = 40  # an error quoting the input quotes this much of it


def echoed(value: str) -> str:
    """The value as an error message may quote it: repr'd, cut short (a 10 MB cell is no answer)."""
    return repr(value if len(value) <= ECHOED_MAX_LENGTH else value[:ECHOED_MAX_LENGTH] + "...")


@deconstructible
class NoControlCharacters(RegexValidator):
    """Refuses a text with a control character (such as NUL, tab or newline) once it is trimmed, as
    every door trims it: a NUL cannot be stored in PostgreSQL text, and none belongs in a label.

    The check is a linear scan; `regex` says the same for the API schema (drf-spectacular reads it)
    and is never run, since its backtracking grows with the square of a long value's length.
    """

    regex = r"^[\s\x1c-\x1f\x85]*[^\x00-\x1f\x7f-\x9f]*[\s\x1c-\x1f\x85]*\Z"
    message = "No control characters (such as NUL, tab or newline)."

    def __call__(self, value) -> None:
        if any(unicodedata.category(char) == "Cc" for char in str(value).strip()):
            raise ValidationError(self.message, code=self.code)


validate_tag = NoControlCharacters()


# The IANA areas whose zones are places. Left out: `localtime`, `Factory`, `posixrules`, POSIX-style
# legacy names (EST5EDT), country aliases (US/Eastern, GB, W-SU) and Etc/GMT+3, none of which says
# where a subscriber lives; UTC stays for clients whose place is unknown.
GEOGRAPHIC_AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


@functools.cache
def client_timezones() -> tuple[str, ...]:
    """The time zones a client can have, sorted: read from the zoneinfo database once per process
    (scanning it is too slow to do on every client saved)."""
    names = zoneinfo.available_timezones()
    places = sorted(name for name in names if "/" in name and name.partition("/")[0] in GEOGRAPHIC_AREAS)
    return (*places, "UTC")


@functools.cache
def _client_timezone_set() -> frozenset[str]:
    return frozenset(client_timezones())  # checked for every row of an import


def validate_timezone(value: str) -> None:
    if value not in _client_timezone_set():
        raise ValidationError(
            f"{echoed(value)} is not the IANA name of a place's time zone, such as Europe/Moscow."
        )


def validate_attributes(value) -> None:
    if errors := attribute_errors(value):
        raise ValidationError(errors)


def mask_phone(phone: str) -> str:
    """The phone as logs, lists and viewers' exports may show it: operator code and last two digits."""
    return f"{phone[:4]}*****{phone[-2:]}" if phone else ""


def phones_masked(batches: Iterable[list[tuple]], *, column: int) -> Iterator[list[tuple]]:
    """Batches of rows (an export's) with the phone in `column` masked; empty where there is none."""
    for batch in batches:
        yield [(*row[:column], mask_phone(row[column] or ""), *row[column + 1 :]) for row in batch]


def default_timezone() -> str:
    return settings.DEFAULT_CLIENT_TIMEZONE


class ClientQuerySet(models.QuerySet):
    def reachable(self) -> "ClientQuerySet":
        """Clients whose phone is not on the opt-out list: a NOT EXISTS on its unique phone index."""
        return self.exclude(models.Exists(OptOut.objects.filter(phone=models.OuterRef("phone"))))

    def opted_out(self) -> "ClientQuerySet":
        return self.filter(models.Exists(OptOut.objects.filter(phone=models.OuterRef("phone"))))

    def matching(self, *, operator_codes: Iterable[str] = (), tags: Iterable[str] = ()) -> "ClientQuerySet":
        """Clients with any of the operator codes and any of the tags; an empty part matches everyone."""
        queryset = self
        if operator_codes := sorted(set(operator_codes) - {""}):
            queryset = queryset.filter(operator_code__in=operator_codes)
        if tags := sorted(set(tags) - {""}):
            queryset = queryset.filter(tag__in=tags)
        return queryset


class Client(models.Model):
    phone = models.CharField(max_length=11, unique=True, validators=[validate_phone])
    operator_code = models.CharField(
        max_length=3,
        validators=[validate_operator_code],
        help_text="Mobile operator code; digits 2-4 of the phone when left empty.",
    )
    tag = models.CharField(
        max_length=TAG_MAX_LENGTH,
        blank=True,
        validators=[validate_tag],
        help_text="Free label used by mailing filters.",
    )
    timezone = models.CharField(max_length=64, default=default_timezone, validators=[validate_timezone])
    # Personal fields a mailing's text may put in (mailings.placeholders); rules in clients.attributes.
    attributes = models.JSONField(
        default=dict,
        db_default=Value({}, output_field=models.JSONField()),
        blank=True,
        validators=[validate_attributes],
        help_text='Named strings a mailing\'s text may use, such as {"name": "Anna"}.',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ClientQuerySet.as_manager()

    class Meta:
        ordering = ["id"]
        # Viewers lack it and see phones masked (accounts.roles).
        permissions = [("view_phone", "Can see clients' phones in clear")]
        constraints = [
            models.CheckConstraint(condition=Q(phone__regex=PHONE_PATTERN), name="client_phone_format"),
            models.CheckConstraint(
                condition=Q(operator_code__regex=OPERATOR_CODE_PATTERN), name="client_operator_code_format"
            ),
        ]
        indexes = [
            models.Index(fields=["operator_code", "tag"], name="client_filter_idx"),
            models.Index(fields=["tag"], name="client_tag_idx"),
            # A mailing's local window defers and counts messages per timezone group.
            models.Index(fields=["timezone", "id"], name="client_timezone_idx"),
        ]

    def __str__(self) -> str:
        return f"Client {self.pk} ({self.masked_phone})"

    def save(self, *args, **kwargs):
        if not self.operator_code and self.phone:
            self.operator_code = self.operator_code_of(self.phone)
        super().save(*args, **kwargs)

    @staticmethod
    def operator_code_of(phone: str) -> str:
        return phone[1:4]

    @property
    def operator_code_is_derived(self) -> bool:
        """False for a code set apart from the phone (a ported number): a new phone keeps it."""
        return self.operator_code == self.operator_code_of(self.phone)

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)


class OptOutSource(models.TextChoices):
    API = "api", "API"
    IMPORT = "import", "CSV import"
    ADMIN = "admin", "Admin"
    PROVIDER = "provider", "Provider (the subscriber replied STOP)"


class OptOut(models.Model):
    """A phone that must receive nothing: no mailing creates a message for it, and its pending
    messages end `opted_out` (messages_app). By phone, not by client: it holds for a client created,
    deleted or imported again later. Removing one is a re-consent (clients.services.optout_remove)."""

    Source = OptOutSource

    phone = models.CharField(max_length=11, unique=True, validators=[validate_phone])
    reason = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=16, choices=OptOutSource.choices)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "opt-out"
        constraints = [
            models.CheckConstraint(condition=Q(phone__regex=PHONE_PATTERN), name="optout_phone_format"),
        ]

    def __str__(self) -> str:
        return f"Opt-out {self.pk} ({self.masked_phone})"

    @property
    def masked_phone(self) -> str:
        return mask_phone(self.phone)
