from datetime import timedelta

import factory
from django.utils import timezone

from mailings.models import Mailing


class MailingFactory(factory.django.DjangoModelFactory):
    """A mailing in the future by default, so that creating one launches nothing."""

    class Meta:
        model = Mailing

    start_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    end_at = factory.LazyAttribute(lambda mailing: mailing.start_at + timedelta(hours=1))
    text = factory.Sequence(lambda n: f"Offer number {n}")
