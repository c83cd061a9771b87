import factory

from clients.models import Client


class ClientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Client

    phone = factory.Sequence(lambda n: f"7900{n:07d}")
    tag = ""
    timezone = "Europe/Moscow"
