from django.utils import timezone
from rest_framework import serializers

from mailing_service.api import StrictModelSerializer
from messages_app.serializers import MessageSerializer

from .models import TEXT_MAX_LENGTH, Mailing, MailingState
from .selectors import MESSAGE_COUNT_KEYS

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

    state = serializers.ChoiceField(
        choices=MailingState.choices,
        read_only=True,
        help_text="scheduled: start not reached; running: sending; paused: held by an operator, unsent "
        "messages pending; cancelled: stopped for good, unsent messages expired; finished: end passed, "
        "or launched with nothing left to send.",
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
            "audience",
            "state",
            "launched_at",
            "paused_at",
            "cancelled_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "launched_at", "paused_at", "cancelled_at", "created_at", "updated_at"]
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
        return attrs


class MessageCountsSerializer(serializers.Serializer):
    """Messages by status, every status present (0 when none), and their total."""

    # Serializes the dict mailings.selectors.attach_message_counts sets as `mailing.message_counts`:
    # each field's source is its own name, which DRF looks up as a key of a mapping.

    def get_fields(self):
        return {
            key: serializers.IntegerField(
                read_only=True,
                help_text="All messages." if key == "total" else f"Messages in status {key}.",
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


class MailingDeleteQuerySerializer(serializers.Serializer):
    with_history = serializers.BooleanField(
        default=False, help_text="Delete the mailing's messages with it; needed once it has any."
    )
