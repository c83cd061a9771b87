"""The local window applied to rows: deferral at fan-out, the claim-side guard, re-deferral when a
zone's window closes, stragglers, expiry. Time frozen with time_machine; the database is real."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory
from mailings.models import Mailing
from mailings.tests.factories import MailingFactory
from messages_app import launch, services
from messages_app.models import Message, WaitingFor
from messages_app.sending.outcomes import Outcome, Result
from messages_app.windows import WindowGuard

pytestmark = pytest.mark.django_db
Status = Message.Status

# 2026-01-10 06:00 UTC: Moscow 09:00, Kolkata 11:30, Tokyo 15:00, London 06:00, New York 01:00.
NOW = datetime(2026, 1, 10, 6, 0, tzinfo=UTC)
ZONES = ["Europe/Moscow", "Asia/Kolkata", "Asia/Tokyo", "Europe/London", "America/New_York"]
OPEN = {"Europe/Moscow", "Asia/Kolkata", "Asia/Tokyo"}


def at(zone: str, *args: int) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone))


@pytest.fixture
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def launched(clock, settings):
    """A 09:00-18:00 mailing to two clients in each of five zones, fanned out at NOW."""
    settings.SENDER_WINDOW_MARGIN = 10
    settings.FANOUT_BATCH_SIZE = 3  # several batches
    for zone in ZONES:
        ClientFactory.create_batch(2, timezone=zone)
    mailing = MailingFactory(
        start_at=NOW - timedelta(minutes=1),
        end_at=NOW + timedelta(days=2),
        local_window_start=time(9),
        local_window_end=time(18),
    )
    assert launch.mailing_launch(mailing_id=mailing.pk)
    return Mailing.objects.get(pk=mailing.pk)


def due_at_by_zone(mailing: Mailing) -> dict[str, set[datetime]]:
    due: dict[str, set[datetime]] = {}
    for zone, next_attempt_at in Message.objects.filter(mailing=mailing, status=Status.PENDING).values_list(
        "client__timezone", "next_attempt_at"
    ):
        due.setdefault(zone, set()).add(next_attempt_at)
    return due


def claim(guard: WindowGuard, now: datetime) -> list[str]:
    rows = services.messages_claim(
        mailing_id=guard.mailing_id, limit=100, now=now, where=guard.claim_condition(now)
    ).rows
    return sorted(
        Client.objects.filter(pk__in=[row.client_id for row in rows]).values_list("timezone", flat=True)
    )


def test_fan_out_defers_closed_zones_to_their_opening_and_leaves_open_ones_due(launched):
    assert due_at_by_zone(launched) == {
        "Europe/Moscow": {NOW},
        "Asia/Kolkata": {NOW},
        "Asia/Tokyo": {NOW},
        "Europe/London": {at("Europe/London", 2026, 1, 10, 9)},
        "America/New_York": {at("America/New_York", 2026, 1, 10, 9)},
    }
    waiting = Message.objects.filter(mailing=launched, waiting_for=WaitingFor.WINDOW)
    assert set(waiting.values_list("client__timezone", flat=True)) == {"Europe/London", "America/New_York"}


def test_claim_hands_out_open_zones_only(launched):
    guard = WindowGuard.for_mailing(launched)

    assert claim(guard, NOW) == sorted([*OPEN, *OPEN])
    assert claim(guard, NOW) == []


def test_claim_never_hands_out_a_closed_zone_even_when_its_message_is_due(launched):
    # As a released lease or a retry would leave it: due now, in a zone where it is 06:00.
    Message.objects.filter(mailing=launched).update(next_attempt_at=NOW)
    guard = WindowGuard.for_mailing(launched)

    claimed = claim(guard, NOW)

    assert set(claimed) == OPEN and len(claimed) == 6


def test_a_deleted_clients_message_is_still_handed_out_to_be_failed(launched):
    Client.objects.filter(timezone="Europe/London").delete()
    Message.objects.filter(mailing=launched, client__isnull=True).update(next_attempt_at=NOW)

    services.messages_claim(
        mailing_id=launched.pk,
        limit=100,
        now=NOW,
        where=WindowGuard.for_mailing(launched).claim_condition(NOW),
    )

    assert not Message.objects.filter(mailing=launched, client__isnull=True, status=Status.PENDING).exists()


def test_pending_messages_of_a_zone_whose_window_closes_wait_for_its_next_opening(launched, clock):
    guard = WindowGuard.for_mailing(launched)
    assert guard.claim_condition(NOW) is not None
    tokyo_close = at("Asia/Tokyo", 2026, 1, 10, 18)

    clock.move_to(tokyo_close - timedelta(seconds=10))  # inside the margin: no request may start
    now = timezone.now()
    claimed = claim(guard, now)

    assert set(claimed) == {"Europe/Moscow", "Asia/Kolkata"}
    assert due_at_by_zone(launched)["Asia/Tokyo"] == {at("Asia/Tokyo", 2026, 1, 11, 9)}


def test_a_new_sender_defers_a_zone_that_closed_just_before_it_started(launched, clock):
    clock.move_to(at("Asia/Tokyo", 2026, 1, 10, 18, 0, 30))

    WindowGuard.for_mailing(launched).claim_condition(timezone.now())

    assert due_at_by_zone(launched)["Asia/Tokyo"] == {at("Asia/Tokyo", 2026, 1, 11, 9)}


def test_stragglers_found_due_in_closed_zones_are_deferred_to_their_opening(launched):
    guard = WindowGuard.for_mailing(launched)
    claim(guard, NOW)  # the open zones' messages are taken
    london = Message.objects.filter(mailing=launched, client__timezone="Europe/London")
    london.update(next_attempt_at=NOW - timedelta(seconds=5), last_error="HTTP 503")  # a retry

    assert guard.defer_stragglers(NOW) == 2
    # Waiting is a mark of its own: the retry's error stays what it was.
    assert set(london.values_list("next_attempt_at", "waiting_for", "last_error")) == {
        (at("Europe/London", 2026, 1, 10, 9), WaitingFor.WINDOW, "HTTP 503")
    }


def test_a_window_opening_after_the_mailing_ends_means_the_message_expires(launched, clock):
    Mailing.objects.filter(pk=launched.pk).update(end_at=NOW + timedelta(hours=2))  # before London's 09:00
    guard = WindowGuard.for_mailing(launched)
    claimed = services.messages_claim(
        mailing_id=launched.pk, limit=100, now=NOW, where=guard.claim_condition(NOW)
    )
    sent = [Result(row.id, claimed.token, Outcome.SENT, row.attempt) for row in claimed.rows]
    services.messages_record(results=sent, now=NOW)

    clock.move_to(NOW + timedelta(hours=2))
    services.messages_expire_pending(now=timezone.now())

    zones = dict(Message.objects.filter(mailing=launched).values_list("client__timezone", "status"))
    assert zones == {zone: Status.SENT for zone in OPEN} | {
        "Europe/London": Status.EXPIRED,
        "America/New_York": Status.EXPIRED,
    }


def test_a_mailing_without_window_defers_nothing_and_claims_everything(clock):
    for zone in ZONES:
        ClientFactory(timezone=zone)
    mailing = MailingFactory(start_at=NOW - timedelta(minutes=1), end_at=NOW + timedelta(hours=1))
    launch.mailing_launch(mailing_id=mailing.pk)
    guard = WindowGuard.for_mailing(mailing)

    assert guard.claim_condition(NOW) is None
    assert len(services.messages_claim(mailing_id=mailing.pk, limit=100, now=NOW).rows) == len(ZONES)
