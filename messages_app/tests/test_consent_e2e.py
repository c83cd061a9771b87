"""End to end, who may get a message: an opt-out arriving while a mailing sends, the frequency cap
across two mailings, and the default quiet hours. A real worker with beat, Redis, PostgreSQL and
the fake provider over HTTP; the API in this process."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from clients.models import Client
from harness.waiting import wait_until
from mailings.models import EXEMPT_FROM_CAP
from messages_app.models import CAP_ERROR, Message, WaitingFor

from .e2e import Worker, all_final, counts_by_status
from .test_pipeline_e2e import accepted_ids, create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PACED = "20"  # PROVIDER_RATE_LIMIT: sends per second, so that a mailing of 200 takes ten seconds


def test_a_phone_opted_out_mid_campaign_gets_nothing_more(
    services_up, fake_provider_process, api_client, tmp_path
):
    make_clients(200)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        PROVIDER_RATE_LIMIT=PACED,
    ):
        mailing_id = create_mailing(api_client)
        messages = Message.objects.filter(mailing_id=mailing_id)
        wait_until(
            lambda: messages.filter(status="sent").count() >= 20, timeout=30, message="sending to start"
        )
        pending = messages.filter(status="pending").order_by("-id")[:5]
        opted_out = {message.id: message.client.phone for message in pending.select_related("client")}
        for phone in opted_out.values():
            response = api_client.post("/api/v1/optouts/", {"phone": phone, "reason": "STOP"}, format="json")
            assert response.status_code == 201, response.content
        opted_out_at = timezone.now()
        wait_until(
            lambda: messages.filter(id__in=opted_out, status="opted_out").count() == len(opted_out),
            timeout=10,
            message="the opted-out phones' messages to end opted_out",
        )
        ended_within = timezone.now() - opted_out_at
        wait_until(lambda: all_final(mailing_id, 200), timeout=60, message="every message to be final")
        # A mailing launched later leaves them out from the start, and says so.
        later = create_mailing(api_client, send_at_any_hour=True)
        wait_until(lambda: all_final(later, 195), timeout=60, message="the next mailing to be sent")

    assert counts_by_status(mailing_id) == {"sent": 195, "opted_out": 5}
    assert not set(accepted_ids(fake_provider_process)) & set(opted_out)
    counts = api_client.get(f"/api/v1/mailings/{mailing_id}/statistics/").json()["message_counts"]
    assert (counts["sent"], counts["opted_out"]) == (195, 5)
    print(f"\nopted-out messages ended within {ended_within.total_seconds():.1f} s")
    assert api_client.get(f"/api/v1/mailings/{later}/").json()["audience_opted_out"] == 5
    assert not Message.objects.filter(mailing_id=later, client__phone__in=opted_out.values()).exists()


def test_the_cap_holds_across_two_mailings_and_spares_an_exempt_one(
    services_up, fake_provider_process, api_client, operator, tmp_path
):
    operator.user_permissions.add(Permission.objects.get(codename=EXEMPT_FROM_CAP))
    make_clients(30)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        CLIENT_MAX_MESSAGES_PER_DAY="1",
    ):
        first = create_mailing(api_client)
        second = create_mailing(api_client, ends_in=20)
        first_and_second = Message.objects.filter(mailing_id__in=(first, second))
        wait_until(
            lambda: (
                first_and_second.filter(status="sent").count() == 30
                and first_and_second.filter(waiting_for=WaitingFor.CAP).count() == 30
            ),
            timeout=30,
            message="one message per client sent, the other waiting for the cap",
        )
        wait_until(lambda: all_final(second, 30), timeout=40, message="the second mailing to end")
        exempt = create_mailing(api_client, cap_exempt=True)  # service messages
        wait_until(lambda: all_final(exempt, 30), timeout=30, message="the exempt mailing to be sent")

    per_client: dict[int, int] = {}
    sent = Message.objects.filter(mailing_id__in=(first, second), status="sent").values_list(
        "client_id", flat=True
    )
    for client_id in sent:
        per_client[client_id] = per_client.get(client_id, 0) + 1
    assert sorted(per_client.values()) == [1] * 30  # one message per client across both mailings
    capped = Message.objects.filter(mailing_id__in=(first, second)).exclude(status="sent")
    ended = set(capped.values_list("status", "last_error", "waiting_for"))
    # The capped messages of the second mailing expired at its end with their reason; any of the
    # first's still wait for tomorrow.
    assert ended <= {("expired", CAP_ERROR, WaitingFor.CAP), ("pending", "", WaitingFor.CAP)}
    assert counts_by_status(exempt) == {"sent": 30}


def test_a_mailing_without_a_window_keeps_the_default_quiet_hours_unless_it_sends_at_any_hour(
    worker, fake_provider_process, api_client, settings
):
    # A default window open in UTC for the next two hours, closed in Tokyo (nine hours ahead).
    now = timezone.now()
    settings.DEFAULT_LOCAL_WINDOW = f"{now - timedelta(hours=1):%H:%M}-{now + timedelta(hours=2):%H:%M}"
    for zone in ("UTC", "Asia/Tokyo"):
        Client.objects.bulk_create(
            Client(
                phone=f"7951{n:07d}" if zone == "UTC" else f"7952{n:07d}", operator_code="951", timezone=zone
            )
            for n in range(10)
        )

    quiet = create_mailing(api_client)
    any_hour = create_mailing(api_client, send_at_any_hour=True)

    wait_until(lambda: all_final(any_hour, 20), timeout=30, message="the any-hour mailing to reach everyone")
    quiet_messages = Message.objects.filter(mailing_id=quiet)
    wait_until(
        lambda: quiet_messages.filter(status="sent").count() == 10,
        timeout=30,
        message="the open zone's messages",
    )
    assert set(quiet_messages.filter(status="sent").values_list("client__timezone", flat=True)) == {"UTC"}
    assert set(
        quiet_messages.exclude(status="sent").values_list("status", "waiting_for", "client__timezone")
    ) == {("pending", WaitingFor.WINDOW, "Asia/Tokyo")}
    stored = api_client.get(f"/api/v1/mailings/{quiet}/").json()
    assert (stored["local_window_start"], stored["send_at_any_hour"]) == (
        f"{now - timedelta(hours=1):%H:%M}:00",
        False,
    )
