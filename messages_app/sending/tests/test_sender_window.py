"""The sender with a local-time window, on a fake clock."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from messages_app.models import Message, WaitingFor
from messages_app.tests.factories import MessageFactory

from .test_sender import running_mailing, sender

pytestmark = pytest.mark.django_db(transaction=True)


def test_only_clients_inside_their_window_are_sent_and_the_others_wait_for_their_opening(transport, clock):
    now = timezone.now()
    kolkata_now = now.astimezone(ZoneInfo("Asia/Kolkata"))
    mailing = running_mailing()
    # Two hours around Kolkata's present; Bogota (10.5 hours behind) is far outside it.
    start, end = ((kolkata_now + timedelta(hours=sign)).time() for sign in (-1, 1))
    Mailing.objects.filter(pk=mailing.pk).update(local_window_start=start, local_window_end=end)
    mailing.refresh_from_db()
    inside = [
        MessageFactory(mailing=mailing, client=ClientFactory(timezone="Asia/Kolkata")) for _ in range(5)
    ]
    # Due now, as a released lease or a retry could leave them: they must not go out.
    outside = [
        MessageFactory(mailing=mailing, client=ClientFactory(timezone="America/Bogota")) for _ in range(3)
    ]

    sender(transport, clock).run(seconds=3)

    assert sorted(msg_id for msg_id, _ in transport.accepted) == sorted(m.id for m in inside)
    opening = mailing.local_window.next_opening("America/Bogota", clock.now())
    waiting = Message.objects.filter(pk__in=[m.id for m in outside])
    assert set(waiting.values_list("status", "next_attempt_at", "waiting_for")) == {
        ("pending", opening, WaitingFor.WINDOW)
    }
