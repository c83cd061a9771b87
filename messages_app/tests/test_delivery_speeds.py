"""How fast each provider's recent messages were delivered, by their receipts
(`selectors.delivery_speeds`): what a sender moves weights by."""

from datetime import timedelta

import pytest
from django.utils import timezone

from messages_app.models import Message
from messages_app.selectors import delivery_speeds
from messages_app.sending.store import DeliverySpeed
from messages_app.tests.factories import MessageFactory

Status = Message.Status

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def sent(provider: str, *, ago: float, delivered_after: float | None = None, status=None) -> None:
    """A message `provider` accepted `ago` seconds before now, delivered `delivered_after` seconds
    after that (None: no receipt yet)."""
    sent_at = NOW - timedelta(seconds=ago)
    if status is None:
        status = Status.SENT if delivered_after is None else Status.DELIVERED
    delivered_at = None if delivered_after is None else sent_at + timedelta(seconds=delivered_after)
    MessageFactory(provider=provider, status=status, sent_at=sent_at, delivered_at=delivered_at)


def test_of_the_providers_with_receipts_the_messages_old_enough_are_judged_and_the_late_counted(settings):
    settings.RECEIPT_SECRETS = {"kannel": "secret", "quiet": "secret"}
    sent("kannel", ago=400, delivered_after=299)
    sent("kannel", ago=400, delivered_after=300)  # at the threshold: not late
    sent("kannel", ago=400, delivered_after=301)  # late
    sent("kannel", ago=300, delivered_after=None)  # the threshold passed without a receipt: late
    sent("kannel", ago=600, delivered_after=10)  # the window's first moment
    sent("kannel", ago=299, delivered_after=None)  # too recent to tell
    sent("kannel", ago=299, delivered_after=10)  # too recent to tell, whatever its receipt said
    sent("kannel", ago=601, delivered_after=None)  # before the window
    sent("kannel", ago=400, status=Status.UNDELIVERED)  # its receipt's time is not kept
    MessageFactory(provider="kannel", status=Status.UNKNOWN)
    MessageFactory(provider="kannel", status=Status.PENDING)
    sent("probe", ago=400, delivered_after=None)  # no receipts ever: never judged

    speeds = delivery_speeds(providers=["kannel", "probe", "quiet"], now=NOW, slow_after=300, window=600)

    assert speeds == {
        "kannel": DeliverySpeed(judged=5, slow=2, delivered=4),
        "quiet": DeliverySpeed(judged=0, slow=0, delivered=0),
    }


def test_a_provider_without_receipts_is_never_judged(settings):
    settings.RECEIPT_SECRETS = {}
    for _ in range(3):
        sent("default", ago=400, delivered_after=None)

    assert delivery_speeds(providers=["default"], now=NOW, slow_after=300, window=600) == {}
