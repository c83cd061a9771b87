import copy
import re

from django.conf import settings
from django.db import models
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied

from accounts.roles import EXEMPT_FROM_CAP
from clients.models import TAG_MAX_LENGTH, validate_operator_code
from mailing_service.api import (
    Conflict,
    FlatListField,
    RejectUnknownFieldsMixin,
    StrictCharField,
    StrictModelSerializer,
)
from messages_app.selectors import MESSAGE_COUNT_KEYS, WAITING
from messages_app.serializers import MessageSerializer

from .models import (
    FILTER_VALUES_MAX,
    TEXT_MAX_LENGTH,
    AnyHourWithWindow,
    Mailing,
    MailingState,
    TestSend,
    window_to_save,
)
from .placeholders import Template, TemplateError, parse
from .selectors import audience_zones_missing_the_window
from .services import MailingEndTooSoonError, mailing_end_check

WINDOW_FIELDS = ("local_window_start", "local_window_end")

EVERY_CLIENT_NOTE = "Leave every filter field empty to send to every client."


LOCAL_TIME_PATTERN = r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?$"


@extend_schema_field({"type": "string", "pattern": LOCAL_TIME_PATTERN, "example": "09:00"})
class LocalTimeField(serializers.TimeField):
    """A time of day on the client's own clock, without a UTC offset: JSON Schema's `time` format
    needs one, hence the pattern; Django would drop an offset silently, so it is refused."""

    def to_internal_value(self, value):
        if not isinstance(value, str) or not re.fullmatch(LOCAL_TIME_PATTERN, value):
            self.fail("invalid", format="hh:mm[:ss[.uuuuuu]], without a UTC offset")
        return super().to_internal_value(value)


def operator_codes_field(**kwargs) -> FlatListField:
    return FlatListField(
        child=StrictCharField(validators=[validate_operator_code]),
        max_length=FILTER_VALUES_MAX,
        help_text="Clients with any of these 3-digit operator codes (or filter_operator_code); "
        "empty: any. With tags too, a client needs one of each.",
        **kwargs,
    )


def tags_field(**kwargs) -> FlatListField:
    return FlatListField(
        child=StrictCharField(max_length=TAG_MAX_LENGTH),
        max_length=FILTER_VALUES_MAX,
        help_text="Clients with any of these tags (or filter_tag); empty: any.",
        **kwargs,
    )


class SegmentsSerializer(serializers.Serializer):
    """What a text costs: operators pay per SMS segment."""

    encoding = serializers.ChoiceField(
        choices=["GSM-7", "UCS-2"],
        help_text="GSM-7 unless a character is outside it (Cyrillic, emoji...), then UCS-2.",
    )
    count = serializers.IntegerField(help_text="SMS segments the text is sent as.")
    units = serializers.IntegerField(
        help_text="Septets (GSM-7, extension-table characters such as € count two) or UTF-16 code "
        "units (UCS-2, an emoji counts two)."
    )
    per_segment = serializers.IntegerField(
        help_text="What one segment holds: 160 / 70 alone, 153 / 67 each when the text is split."
    )


TEXT_HELP = (
    "The SMS text; not blank. {key|fallback} puts in the client's attribute `key` (fallback for clients "
    "without it; required, may be empty): Hello, {name|customer}! {{ and }} are literal braces."
)


def validate_template(text: str) -> str:
    try:
        parse(text)
    except TemplateError as error:
        raise serializers.ValidationError(error.errors) from error
    return text


class TemplateTextField(StrictCharField):
    """A mailing text, checked as a template (mailings.placeholders)."""

    def __init__(self, **kwargs):
        super().__init__(max_length=TEXT_MAX_LENGTH, validators=[validate_template], **kwargs)


class SegmentsDraftSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    text = StrictCharField(max_length=TEXT_MAX_LENGTH, help_text="A draft SMS text.")


class MailingSerializer(StrictModelSerializer):
    """A text sent between start_at and end_at to the clients matching the filter.

    A request body with a field not listed here is refused with 400.
    """

    serializer_field_mapping = {
        **StrictModelSerializer.serializer_field_mapping,
        models.TimeField: LocalTimeField,
    }

    audience = serializers.CharField(
        source="audience_description",
        read_only=True,
        help_text='Who the mailing goes to, from its filter; "all clients" when the filter is empty.',
    )

    filter_operator_codes = operator_codes_field(required=False)
    filter_tags = tags_field(required=False)
    text = TemplateTextField(help_text=TEXT_HELP)
    send_at_any_hour = serializers.BooleanField(
        required=False,
        help_text="true: no local window, messages go out at any hour (not with local_window_start or "
        "local_window_end). A new mailing with neither this nor a window gets the deployment's default "
        "window, DEFAULT_LOCAL_WINDOW (quiet hours), as if sent in local_window_start/end. Read: whether "
        "the mailing has no window.",
    )
    draft = serializers.BooleanField(
        required=False,
        help_text="Create as a draft: never sent until launched (POST .../launch/), edited, previewed "
        "and test-sent freely meanwhile. Set on create only.",
    )
    segments = SegmentsSerializer(
        read_only=True,
        help_text="The text's encoding and SMS segments, every placeholder at its fallback (the audience "
        "preview renders it for real clients).",
    )
    state = serializers.ChoiceField(
        choices=MailingState.choices,
        read_only=True,
        help_text="draft: saved, never sent until launched; scheduled: start not reached; running: "
        "sending; paused: held by an operator, unsent messages pending; cancelled: stopped for good, "
        "unsent messages expired; finished: end passed, or launched with nothing left to send.",
    )

    class Meta:
        model = Mailing
        fields = [
            "id",
            "start_at",
            "end_at",
            "text",
            "filter_operator_code",
            "filter_operator_codes",
            "filter_tag",
            "filter_tags",
            "local_window_start",
            "local_window_end",
            "send_at_any_hour",
            "cap_exempt",
            "audience",
            "audience_size",
            "audience_opted_out",
            "resend_of",
            "segments",
            "state",
            "draft",
            "launched_at",
            "paused_at",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "audience_size",
            "audience_opted_out",
            "resend_of",
            "launched_at",
            "paused_at",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "end_at": {
                "help_text": "Nothing is sent from this moment on; unsent messages expire. After start_at; "
                "the only field that can still change once the mailing is launched."
            },
            "filter_operator_code": {
                "help_text": "Only clients with this 3-digit operator code; empty: any. " + EVERY_CLIENT_NOTE
            },
            "filter_tag": {"help_text": "Only clients with this tag; empty: any. " + EVERY_CLIENT_NOTE},
            "launched_at": {
                "help_text": "When its messages were created; from then on only end_at can change (409)."
            },
            "local_window_start": {
                "help_text": "With local_window_end, or both null: each client gets the message only "
                "between these times of day in their own timezone (HH:MM[:SS]). Outside it a message "
                "waits for the client's next opening, and expires if the mailing ends first."
            },
            "local_window_end": {
                "help_text": "End of the local window, not included; earlier than local_window_start: "
                "the window crosses midnight (22:00 to 06:00). Must differ from local_window_start."
            },
            "audience_size": {"help_text": "Clients it was sent to, once launched; null before."},
            "audience_opted_out": {
                "help_text": "Clients of its filter left out at launch because their phone is on the "
                "opt-out list; null before."
            },
            "cap_exempt": {
                "help_text": "true: its messages are never held by the frequency cap "
                "(CLIENT_MAX_MESSAGES_PER_DAY), for service messages; they still count towards it. "
                "Changing it needs the mailings.exempt_from_cap permission (403 without); frozen at launch."
            },
            "resend_of": {
                "help_text": "A resend goes to the clients whose messages of this mailing failed or "
                "expired, whatever its filter fields; null for an ordinary mailing."
            },
        }

    def validate(self, attrs):
        if self.instance is not None and attrs.pop("draft", self.instance.draft) != self.instance.draft:
            raise serializers.ValidationError(
                {"draft": ["Set on create only: launch a draft with POST /api/v1/mailings/{id}/launch/."]}
            )
        if self.instance is not None and "end_at" in attrs:
            # Before the order of start and end: an end in the past is answered with cancel.
            try:
                mailing_end_check(mailing=self.instance, end_at=attrs["end_at"], now=timezone.now())
            except MailingEndTooSoonError as exc:
                raise serializers.ValidationError({"end_at": [str(exc)]}) from exc
        start_at = attrs.get("start_at", getattr(self.instance, "start_at", None))
        end_at = attrs.get("end_at", getattr(self.instance, "end_at", None))
        if end_at <= start_at and not ("start_at" in attrs and "end_at" in attrs):
            # One side is the stored mailing's: the request is well formed but conflicts with it.
            stored = "start_at" if "end_at" in attrs else "end_at"
            raise Conflict(
                {
                    stored: [
                        f"The mailing's {stored} is {getattr(self.instance, stored).isoformat()}: end_at "
                        "must be after start_at; send both to move the window."
                    ]
                }
            )
        validate_window(start_at, end_at, new=self.instance is None)
        default = self._apply_any_hour(attrs)
        self._validate_local_window(attrs, default=default)
        return attrs

    def validate_cap_exempt(self, value: bool) -> bool:
        if value != getattr(self.instance, "cap_exempt", False):
            user = self.context["request"].user
            if not user.has_perm(f"mailings.{EXEMPT_FROM_CAP}"):
                raise PermissionDenied(
                    f"Changing cap_exempt needs the mailings.{EXEMPT_FROM_CAP} permission."
                )
        return value

    def _apply_any_hour(self, attrs) -> bool:
        """Turns send_at_any_hour into the window fields (models.window_to_save): true clears the
        window; a new mailing that says nothing of its window, or false, gets the default window.
        True when it did that."""
        any_hour = attrs.pop("send_at_any_hour", None)
        said = any(name in attrs for name in WINDOW_FIELDS)
        # Sending at any hour replaces a stored window; only one sent with it conflicts.
        stored = None if any_hour else self.instance
        start, end = (attrs.get(name, getattr(stored, name, None)) for name in WINDOW_FIELDS)
        try:
            start, end, default = window_to_save(
                start,
                end,
                any_hour=bool(any_hour),
                wants_default=any_hour is False or (any_hour is None and self.instance is None and not said),
            )
        except AnyHourWithWindow as error:
            raise serializers.ValidationError({"send_at_any_hour": [str(error)]}) from error
        if any_hour is not None or default:
            attrs["local_window_start"], attrs["local_window_end"] = start, end
        return default

    def _validate_local_window(self, attrs, *, default: bool) -> None:
        start, end = (attrs.get(name, getattr(self.instance, name, None)) for name in WINDOW_FIELDS)
        if start is None and end is None:
            return
        if start is None or end is None:
            missing, given = WINDOW_FIELDS if start is None else reversed(WINDOW_FIELDS)
            raise serializers.ValidationError(
                {missing: [f"Required with {given}: set both ends of the local window, or neither."]}
            )
        if start == end:
            raise serializers.ValidationError({"local_window_end": ["Must differ from local_window_start."]})
        if self.instance is not None and self.instance.is_launched:
            return  # its messages exist: only end_at may change, and what the window misses expires
        zones, missed = audience_zones_missing_the_window(self._mailing_as_saved(attrs), now=timezone.now())
        if zones and len(missed) == len(zones):
            listed = ", ".join(missed[:5]) + (f" and {len(missed) - 5} more" if len(missed) > 5 else "")
            raise serializers.ValidationError(
                {
                    "send_at_any_hour" if default else "local_window_start": [
                        f"The {'default (DEFAULT_LOCAL_WINDOW) ' if default else ''}window "
                        f"{start:%H:%M}-{end:%H:%M} never opens between start_at and end_at in the "
                        f"timezone of any client the mailing goes to ({listed}): it would send nothing."
                        + (" Set a window, or send_at_any_hour." if default else "")
                    ]
                }
            )

    def _mailing_as_saved(self, attrs) -> Mailing:
        """The mailing as it would be with these values, unsaved, to ask it about its audience."""
        mailing = Mailing() if self.instance is None else copy.copy(self.instance)
        columns = {field.name for field in Mailing._meta.concrete_fields}
        for name, value in attrs.items():
            if name in columns:
                setattr(mailing, name, value)
        return mailing


def validate_window(start_at, end_at, *, new: bool) -> None:
    if end_at <= start_at:
        raise serializers.ValidationError({"end_at": ["Must be after start_at."]})
    if new and end_at <= timezone.now():
        raise serializers.ValidationError(
            {"end_at": ["Must be in the future: the mailing would send nothing."]}
        )


class ResendSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """The window of the new mailing, and optionally another text."""

    start_at = serializers.DateTimeField(help_text="The new mailing starts sending at this moment.")
    end_at = serializers.DateTimeField(help_text="Nothing is sent from this moment on; after start_at.")
    text = TemplateTextField(
        required=False, help_text="Another text (placeholders as a mailing's); left out: the same text."
    )

    def validate(self, attrs):
        validate_window(attrs["start_at"], attrs["end_at"], new=True)
        return attrs


COUNT_HELP = {
    "total": "All messages.",
    WAITING: "Pending messages waiting for their client's local window to open (counted in pending).",
}


class MessageCountsSerializer(serializers.Serializer):
    """Messages by status, every status present (0 when none), and their total."""

    # Serializes the dict messages_app.selectors.attach_message_counts sets as `mailing.message_counts`:
    # each field's source is its own name, which DRF looks up as a key of a mapping.

    def get_fields(self):
        return {
            key: serializers.IntegerField(
                read_only=True,
                help_text=COUNT_HELP.get(key, f"Messages in status {key}."),
            )
            for key in MESSAGE_COUNT_KEYS
        }


class MailingStatisticsSerializer(MailingSerializer):
    """A mailing with its messages counted by status."""

    # Set on the mailing by messages_app.selectors.attach_message_counts before serializing.
    message_counts = MessageCountsSerializer(read_only=True)

    class Meta(MailingSerializer.Meta):
        fields = [*MailingSerializer.Meta.fields, "message_counts"]
        read_only_fields = fields


class MessagePageSerializer(serializers.Serializer):
    """One page of messages, as the paginated lists give them."""

    count = serializers.IntegerField(help_text="Messages matching the filter, on all pages.")
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")
    previous = serializers.URLField(allow_null=True, help_text="The previous page, or null.")
    results = MessageSerializer(many=True)


class ProgressSerializer(serializers.Serializer):
    percent_done = serializers.FloatField(
        allow_null=True, help_text="Messages final (sent, failed, expired) per 100; null without messages."
    )
    rate_per_second = serializers.FloatField(help_text="Messages sent per second over the last minute.")
    estimated_finish_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the unsent messages would be sent at that rate, and no earlier than the last "
        "local-window opening some of them wait for, while running; null otherwise (or with no send "
        "in the last minute and messages due). Later than end_at means what is left will not all fit.",
    )


class MessageTotalsSerializer(serializers.Serializer):
    message_counts = MessageCountsSerializer(read_only=True)


class ReceiptsSerializer(serializers.Serializer):
    delivered = serializers.IntegerField(help_text="Messages its provider's receipt says reached the phone.")
    undelivered = serializers.IntegerField(help_text="Messages its provider's receipt says did not.")
    awaiting = serializers.IntegerField(help_text="Sent less than RECEIPT_WAIT ago, no receipt yet.")
    no_receipt = serializers.IntegerField(help_text="Sent longer than RECEIPT_WAIT ago, no receipt.")
    delivered_percent = serializers.FloatField(
        allow_null=True, help_text="Delivered per 100 of delivered, undelivered and no receipt."
    )
    delay = serializers.FloatField(
        allow_null=True, help_text="Mean seconds from acceptance to the delivered receipt."
    )


class MailingStatisticsDetailSerializer(MailingStatisticsSerializer):
    """A mailing, its messages counted by status, its progress, and one page of the messages."""

    progress = ProgressSerializer(read_only=True)
    receipts = ReceiptsSerializer(
        read_only=True,
        allow_null=True,
        help_text="Delivery receipts of its messages sent through providers with receipts; null when none.",
    )

    messages = MessagePageSerializer(
        read_only=True, help_text="One page of the mailing's messages, filtered by ?status= when given."
    )

    class Meta(MailingStatisticsSerializer.Meta):
        fields = [*MailingStatisticsSerializer.Meta.fields, "progress", "receipts", "messages"]
        read_only_fields = fields


class MailingDeleteQuerySerializer(serializers.Serializer):
    with_history = serializers.BooleanField(
        default=False, help_text="Delete the mailing's messages with it; needed once it has any."
    )


class AudienceQuerySerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    """A mailing's filter fields, as query parameters; list values repeated or comma-separated."""

    # An empty value is refused, as by every filter of the API (leave the parameter out instead).
    filter_operator_code = StrictCharField(
        required=False, validators=[validate_operator_code], help_text="One operator code."
    )
    filter_operator_codes = operator_codes_field(required=False)
    filter_tag = StrictCharField(required=False, max_length=TAG_MAX_LENGTH, help_text="One tag.")
    filter_tags = tags_field(required=False)
    text = TemplateTextField(
        required=False,
        help_text="A mailing text: the sample shows each client's text, and `costliest` the costliest one.",
    )

    LIST_FIELDS = ("filter_operator_codes", "filter_tags")

    @classmethod
    def from_query(cls, query_params) -> "AudienceQuerySerializer":
        data = {name: query_params.get(name) for name in query_params if name not in cls.LIST_FIELDS}
        for name in cls.LIST_FIELDS:
            if name in query_params:
                # "vip," and "vip, " are "vip" (the schema allows those values: a piece between
                # commas may be empty or whitespace, which the field would trim to a refused blank);
                # an empty value stays one, for the child field to refuse it rather than read it as
                # no filter at all.
                data[name] = [
                    piece
                    for raw in query_params.getlist(name)
                    for piece in ([part for part in raw.split(",") if part.strip()] or [raw])
                ]
        return cls(data=data)

    def merged(self) -> dict[str, list[str]]:
        """The filter as Client.objects.matching takes it."""
        data = self.validated_data
        return {
            "operator_codes": [*data.get("filter_operator_codes", []), data.get("filter_operator_code", "")],
            "tags": [*data.get("filter_tags", []), data.get("filter_tag", "")],
        }

    @property
    def template(self) -> Template | None:
        text = self.validated_data.get("text")
        return None if text is None else parse(text)


class AudienceClientSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField(source="masked_phone", help_text="Masked: operator code and last digits.")
    operator_code = serializers.CharField()
    tag = serializers.CharField()
    timezone = serializers.CharField()
    text = serializers.CharField(
        source="rendered_text", required=False, help_text="The text this client would get (with ?text=)."
    )


class RenderedTextSerializer(serializers.Serializer):
    text = serializers.CharField()
    segments = SegmentsSerializer()


class LeftOutSerializer(serializers.Serializer):
    opted_out = serializers.IntegerField(help_text="Matching clients whose phone is on the opt-out list.")


class AudienceSerializer(serializers.Serializer):
    audience = serializers.CharField(help_text="The filter in words.")
    count = serializers.IntegerField(help_text="Clients matching the filter now that a mailing would reach.")
    left_out = LeftOutSerializer(help_text="Matching clients a mailing would leave out, by reason.")
    sample = AudienceClientSerializer(many=True, help_text="A few of them (phones masked).")
    costliest = RenderedTextSerializer(
        allow_null=True,
        help_text="With ?text=: the costliest text it renders for this audience and its segments: "
        "each placeholder at the longest value (or fallback) among these clients, and in turn at the "
        "longest value outside GSM-7, which makes the whole text UCS-2. Null without ?text=.",
    )


class TestSendRequestSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    __test__ = False

    client_ids = FlatListField(
        child=serializers.IntegerField(min_value=1),
        min_length=1,
        max_length=settings.TEST_SEND_MAX_CLIENTS,
        help_text=f"Clients to send the text to now; at most {settings.TEST_SEND_MAX_CLIENTS}.",
    )

    def validate_client_ids(self, value):
        return list(dict.fromkeys(value))


class TestSendSerializer(serializers.ModelSerializer):
    __test__ = False

    class Meta:
        model = TestSend
        fields = ["id", "client", "status", "detail", "created_at", "finished_at"]
        read_only_fields = fields
        extra_kwargs = {
            "status": {
                "help_text": "pending until the provider answered; sent: accepted; failed: see detail."
            },
            "detail": {"help_text": "Why it failed."},
        }
