from datetime import timedelta

import factory
from django.utils import timezone

from mailings.models import Mailing, MailingState


class MailingFactory(factory.django.DjangoModelFactory):
    """A mailing in the future by default, so that creating one launches nothing."""

    class Meta:
        model = Mailing

    start_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=1))
    end_at = factory.LazyAttribute(lambda mailing: mailing.start_at + timedelta(hours=1))
    text = factory.Sequence(lambda n: f"Offer number {n}")


def mailing_in(state: str, **statuses: int) -> Mailing:
    """A mailing in the given state, launched unless scheduled or a draft, with messages in the given
    statuses (a draft: none unless given). A draft's window holds the present: only being one keeps
    it from running."""
    now = timezone.now()
    fields = {"start_at": now - timedelta(minutes=5), "end_at": now + timedelta(hours=1)}
    if state == MailingState.SCHEDULED:
        fields = {"start_at": now + timedelta(hours=1), "end_at": now + timedelta(hours=2)}
    elif state == MailingState.DRAFT:
        fields["draft"] = True
        statuses = statuses or {"pending": 0}
    else:
        fields |= {"launched_at": now, "fanout_completed_at": now}
    if state == MailingState.PAUSED:
        fields["paused_at"] = now
    if state == MailingState.CANCELLED:
        fields["cancelled_at"] = now
    if state == MailingState.FINISHED:
        fields["end_at"] = now - timedelta(minutes=1)
        fields["start_at"] = now - timedelta(minutes=10)
    mailing = MailingFactory(start_at=now + timedelta(days=1), end_at=now + timedelta(days=2))
    Mailing.objects.filter(pk=mailing.pk).update(**fields)  # no save(): the launch hook stays out
    from messages_app.tests.factories import MessageFactory  # imports this module: not at the top

    for status, number in (statuses or {"pending": 1}).items():
        MessageFactory.create_batch(number, mailing=mailing, status=status)
    return Mailing.objects.get(pk=mailing.pk)
