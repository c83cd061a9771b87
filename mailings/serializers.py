import copy

from django.utils import timezone
from rest_framework import serializers

from mailing_service.api import StrictModelSerializer
from messages_app.serializers import MessageSerializer

from .models import TEXT_MAX_LENGTH, Mailing
from .selectors import MESSAGE_COUNT_KEYS, WAITING, audience_zones_missing_the_window

WINDOW_FIELDS = ("local_window_start", "local_window_end")

EVERY_CLIENT_NOTE = "Leave both filter_operator_code and filter_tag empty to send to every client."


class MailingSerializer(StrictModelSerializer):
    """A text sent between start_at and end_at to the clients matching the filter.

    A request body with a field not listed here is refused with 400.
    """

    audience = serializers.CharField(
        source="audience_description",
        read_only=True,
        help_text='Who the mailing goes to, from its filter; "all clients" when the filter is empty.',
    )

    class Meta:
        model = Mailing
        fields = [
            "id",
            "start_at",
            "end_at",
            "text",
            "filter_operator_code",
            "filter_tag",
            "local_window_start",
            "local_window_end",
            "audience",
            "launched_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "launched_at", "created_at", "updated_at"]
        extra_kwargs = {
            "end_at": {
                "help_text": "Nothing is sent from this moment on; unsent messages expire. After start_at; "
                "the only field that can still change once the mailing is launched."
            },
            "text": {"max_length": TEXT_MAX_LENGTH, "help_text": "The SMS text; not blank."},
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
        }

    def validate(self, attrs):
        start_at = attrs.get("start_at", getattr(self.instance, "start_at", None))
        end_at = attrs.get("end_at", getattr(self.instance, "end_at", None))
        if end_at <= start_at:
            raise serializers.ValidationError({"end_at": ["Must be after start_at."]})
        if self.instance is None and end_at <= timezone.now():
            raise serializers.ValidationError(
                {"end_at": ["Must be in the future: the mailing would send nothing."]}
            )
        self._validate_local_window(attrs)
        return attrs

    def _validate_local_window(self, attrs) -> None:
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
                    "local_window_start": [
                        f"The window {start:%H:%M}-{end:%H:%M} never opens between start_at and end_at in "
                        f"the timezone of any client the mailing goes to ({listed}): it would send nothing."
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


COUNT_HELP = {
    "total": "All messages.",
    WAITING: "Pending messages waiting for their client's local window to open (counted in pending).",
}


class MessageCountsSerializer(serializers.Serializer):
    """Messages by status, every status present (0 when none), and their total."""

    # Serializes the dict mailings.selectors.attach_message_counts sets as `mailing.message_counts`:
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

    # Set on the mailing by mailings.selectors.attach_message_counts before serializing.
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


class MailingStatisticsDetailSerializer(MailingStatisticsSerializer):
    """A mailing, its messages counted by status, and one page of the messages themselves."""

    messages = MessagePageSerializer(
        read_only=True, help_text="One page of the mailing's messages, filtered by ?status= when given."
    )

    class Meta(MailingStatisticsSerializer.Meta):
        fields = [*MailingStatisticsSerializer.Meta.fields, "messages"]
        read_only_fields = fields
