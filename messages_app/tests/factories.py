import factory

from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app.models import Message
from messages_app.selectors import MESSAGE_COUNT_KEYS


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    mailing = factory.SubFactory(MailingFactory)
    client = factory.SubFactory(ClientFactory)
    phone = factory.LazyAttribute(lambda message: message.client.phone if message.client else "")


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(MESSAGE_COUNT_KEYS, 0)


def create_messages(mailing: Mailing, per_status: dict[str, int]) -> dict[str, int]:
    """Creates the messages and gives the counts the statistics should report for them."""
    for status, number in per_status.items():
        MessageFactory.create_batch(number, mailing=mailing, status=status)
    return {**zero_counts(), **per_status, "total": sum(per_status.values())}


def three_mailings_with_messages() -> dict[int, dict[str, int]]:
    """Three mailings: one with messages in every status, one with some, one with none; the counts
    the statistics should report for each, by mailing id."""
    every = MailingFactory(text="every status")
    some = MailingFactory(text="some")
    empty = MailingFactory(text="none")
    expected = {
        every.pk: create_messages(
            every, {"pending": 1, "sending": 2, "sent": 3, "failed": 4, "expired": 5, "unknown": 6}
        ),
        some.pk: create_messages(some, {"sent": 2, "failed": 1}),
        empty.pk: zero_counts(),
    }
    return expected
