import factory

from clients.tests.factories import ClientFactory
from mailings.tests.factories import MailingFactory
from messages_app.models import Message


class MessageFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Message

    mailing = factory.SubFactory(MailingFactory)
    client = factory.SubFactory(ClientFactory)
