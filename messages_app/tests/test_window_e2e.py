"""End to end with a local-time window: a real worker with beat, Redis, PostgreSQL and the fake
provider over HTTP. The window is chosen from the present moment, so the test works at any hour.

Zones without daylight saving time, so their offsets are fixed: the window opens in Moscow (UTC+3)
a few seconds after the mailing is created and lasts three hours. Then at creation Dubai (+4) and
Kolkata (+5:30) are inside it, UTC has it three hours ahead and Tokyo (+9) eighteen hours ahead.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from clients.models import Client
from harness.waiting import wait_until
from messages_app.models import Message

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OPENS_IN = timedelta(seconds=12)  # Moscow's opening after the mailing is created
PER_ZONE = 10
SENT_ZONES = ("Europe/Moscow", "Asia/Dubai", "Asia/Kolkata")
# How long after Moscow's opening each waiting zone's opens (the same local time, earlier offsets).
WAITING_ZONES = {"UTC": timedelta(hours=3), "Asia/Tokyo": timedelta(hours=18)}


def inside(local: datetime, start, end) -> bool:
    clock = local.time()
    return start <= clock < end if start < end else clock >= start or clock < end


def test_each_client_gets_the_message_inside_its_own_local_window(worker, fake_provider_process, api_client):
    for n, zone in enumerate((*SENT_ZONES, *WAITING_ZONES)):
        Client.objects.bulk_create(
            Client(phone=f"7950{n:02d}{i:05d}", operator_code="950", timezone=zone) for i in range(PER_ZONE)
        )
    now = timezone.now()
    moscow_opening = (now + OPENS_IN).replace(microsecond=0)
    start = moscow_opening.astimezone(ZoneInfo("Europe/Moscow")).time()
    end = (moscow_opening + timedelta(hours=3)).astimezone(ZoneInfo("Europe/Moscow")).time()

    response = api_client.post(
        "/api/v1/mailings/",
        {
            "start_at": (now - timedelta(seconds=1)).isoformat(),
            "end_at": (now + timedelta(hours=24)).isoformat(),
            "text": "Good morning",
            "local_window_start": start.isoformat(),
            "local_window_end": end.isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    mailing_id = response.json()["id"]

    messages = Message.objects.filter(mailing_id=mailing_id)
    wait_until(
        lambda: messages.count() == PER_ZONE * 5,
        timeout=OPENS_IN.total_seconds() - 2,
        message="the fan-out, before Moscow's window opens",
    )
    moscow_due = messages.filter(client__timezone="Europe/Moscow").values_list("next_attempt_at", flat=True)
    assert set(moscow_due) == {moscow_opening}  # created waiting for its opening

    sent = messages.filter(status="sent")
    wait_until(
        lambda: sent.count() == len(SENT_ZONES) * PER_ZONE, timeout=45, message="the open zones' messages"
    )

    zone_of = dict(Message.objects.filter(mailing_id=mailing_id).values_list("id", "client__timezone"))
    accepted = fake_provider_process.control.accepted()
    assert len(accepted) == len({msg_id for msg_id, _ in accepted}) == len(SENT_ZONES) * PER_ZONE
    for msg_id, accepted_at in accepted:
        local = datetime.fromtimestamp(accepted_at, ZoneInfo(zone_of[msg_id]))
        assert inside(local, start, end), (zone_of[msg_id], local.time(), start, end)
    moscow = [at for msg_id, at in accepted if zone_of[msg_id] == "Europe/Moscow"]
    others = [at for msg_id, at in accepted if zone_of[msg_id] != "Europe/Moscow"]
    assert min(moscow) >= moscow_opening.timestamp()
    assert min(others) < moscow_opening.timestamp()  # Dubai and Kolkata did not wait for Moscow

    for zone, after_moscow in WAITING_ZONES.items():
        waiting = Message.objects.filter(mailing_id=mailing_id, client__timezone=zone)
        assert set(waiting.values_list("status", "next_attempt_at")) == {
            ("pending", (moscow_opening + after_moscow).astimezone(UTC))
        }
    counts = api_client.get(f"/api/v1/mailings/{mailing_id}/statistics/").json()["message_counts"]
    assert (counts["sent"], counts["pending"], counts["waiting_for_window"]) == (30, 20, 20)
