from rest_framework import serializers

from clients.serializers import MaskedPhoneMixin

from .models import Message


class MessageSerializer(MaskedPhoneMixin, serializers.ModelSerializer):
    """One message of a mailing to one client, with its delivery state."""

    class Meta:
        model = Message
        fields = [
            "id",
            "mailing",
            "client",
            "phone",
            "status",
            "attempts",
            "last_error",
            "created_at",
            "sent_at",
            "delivered_at",
            "provider",
            "provider_message_id",
            "next_attempt_at",
            "waiting_for",
            "provider",
            "provider_message_id",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "client": {"help_text": "The client's id; null when the client was deleted."},
            "delivered_at": {"help_text": "When its provider's receipt said it reached the phone."},
            "phone": {
                "help_text": "The recipient: the client's phone when the mailing was launched, kept "
                "when the client is deleted or renumbered. Masked for viewers (operator code and "
                "last digits)."
            },
            "provider": {
                "help_text": "The name of the provider that took it (sent), or may have (unknown); "
                "empty before."
            },
            "provider_message_id": {"help_text": "That provider's own id for it, when its API gives one."},
            "waiting_for": {
                "help_text": 'What the message waits for until next_attempt_at: "window" (its '
                "client's local sending window opens then) or nothing (empty). An expired message "
                "keeps what it was still waiting for."
            },
        }
