"""End to end: the API, a real Celery worker with beat, Redis, PostgreSQL and the fake provider over HTTP.

`E2E_FAULT_CLIENTS` sets the size of the faulty-provider mailing (500 by default; the closing note
of the sending issue ran it with 10,000).
"""

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from clients.models import Client
from harness.waiting import wait_until
from mailings.models import Mailing
from messages_app.models import Message, SenderHeartbeat

from .e2e import (
    TOKEN,
    FakeProviderProcess,
    Worker,
    all_final,
    counts_by_status,
    delete_queue,
    require_rabbitmq,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def make_clients(count: int, **fields) -> list[int]:
    first = Client.objects.count()
    Client.objects.bulk_create(
        Client(phone=f"79{first + n:09d}", operator_code="900", timezone="UTC", **fields)
        for n in range(count)
    )
    return list(Client.objects.filter(**fields).values_list("id", flat=True)) if fields else []


def create_mailing(api_client, *, starts_in: float = -1, ends_in: float = 600, **filters) -> int:
    now = timezone.now()
    response = api_client.post(
        "/api/v1/mailings/",
        {
            "start_at": (now + timedelta(seconds=starts_in)).isoformat(),
            "end_at": (now + timedelta(seconds=ends_in)).isoformat(),
            "text": "Autumn sale",
            **filters,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


def accepted_ids(fake_provider_process: FakeProviderProcess) -> list[int]:
    return [msg_id for msg_id, _ in fake_provider_process.control.accepted()]


@pytest.mark.parametrize("pool", ["solo", "threads"])
def test_a_worker_without_pool_processes_runs_its_sender(
    pool, services_up, fake_provider_process, api_client, tmp_path
):
    make_clients(20)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        concurrency=1,
        pool=pool,
    ) as worker:
        wait_until(lambda: SenderHeartbeat.objects.exists(), timeout=15, message="the sender's heartbeat")
        mailing_id = create_mailing(api_client)
        wait_until(lambda: all_final(mailing_id, 20), timeout=30, message="every message to be final")
        worker.stop()  # Celery's own warm shutdown, then the sender's

    assert counts_by_status(mailing_id) == {"sent": 20}
    assert not SenderHeartbeat.objects.exists()  # it stopped and said so


def test_mailing_inside_its_window_is_sent_at_once_to_every_client(worker, fake_provider_process, api_client):
    make_clients(40)

    mailing_id = create_mailing(api_client)

    wait_until(lambda: all_final(mailing_id, 40), timeout=30, message="every message to be final")
    assert counts_by_status(mailing_id) == {"sent": 40}
    ids = set(Message.objects.filter(mailing_id=mailing_id).values_list("id", flat=True))
    assert sorted(accepted_ids(fake_provider_process)) == sorted(ids)


def test_future_mailing_starts_by_itself_when_its_start_comes(worker, fake_provider_process, api_client):
    make_clients(10)

    mailing_id = create_mailing(api_client, starts_in=4)

    time.sleep(2)
    assert not Message.objects.filter(mailing_id=mailing_id).exists()
    wait_until(lambda: all_final(mailing_id, 10), timeout=20, message="the scanner to launch the mailing")
    first_send = min(at for _, at in fake_provider_process.control.accepted())
    assert first_send >= Mailing.objects.get(pk=mailing_id).start_at.timestamp()
    assert counts_by_status(mailing_id) == {"sent": 10}


def test_filters_by_code_tag_and_both_reach_exactly_their_clients(worker, fake_provider_process, api_client):
    vip_900 = make_clients(3, tag="vip")
    Client.objects.bulk_create(
        Client(phone=f"7901000000{n}", operator_code="901", tag=tag, timezone="UTC")
        for n, tag in enumerate(["vip", "vip", "new"])
    )
    vip_901 = list(Client.objects.filter(operator_code="901", tag="vip").values_list("id", flat=True))
    all_901 = list(Client.objects.filter(operator_code="901").values_list("id", flat=True))

    by_code = create_mailing(api_client, filter_operator_code="901")
    by_tag = create_mailing(api_client, filter_tag="vip")
    by_both = create_mailing(api_client, filter_operator_code="901", filter_tag="vip")

    expected = {by_code: set(all_901), by_tag: set(vip_900 + vip_901), by_both: set(vip_901)}
    total = sum(map(len, expected.values()))
    wait_until(
        lambda: sum(all_final(m, len(ids)) for m, ids in expected.items()) == len(expected),
        timeout=30,
        message=f"the {total} messages of the three mailings",
    )
    for mailing_id, client_ids in expected.items():
        reached = set(Message.objects.filter(mailing_id=mailing_id).values_list("client_id", flat=True))
        assert reached == client_ids
        assert counts_by_status(mailing_id) == {"sent": len(client_ids)}
    assert fake_provider_process.control.stats()["duplicates"] == 0


def test_faulty_provider_still_gets_every_message_exactly_once(worker, fake_provider_process, api_client):
    size = int(os.environ.get("E2E_FAULT_CLIENTS", "500"))
    fake_provider_process.control.configure(error_rate=0.3, garbage_rate=0.1, latency=0.01)
    make_clients(size)

    created = time.monotonic()
    mailing_id = create_mailing(api_client, ends_in=900)

    wait_until(
        lambda: all_final(mailing_id, size), timeout=60 + size / 50, message="every message to be final"
    )
    stats = fake_provider_process.control.stats()
    print(
        f"\n30 % 5xx + 10 % garbage: {size} final {time.monotonic() - created:.1f} s after creation, "
        f"{stats['requests_total'] / size:.2f} requests per message"
    )
    assert counts_by_status(mailing_id) == {"sent": size}
    assert (stats["accepted_total"], stats["unique_accepted"], stats["duplicates"]) == (size, size, 0)
    assert stats["outcomes"]["error_5xx"] > 0 and stats["outcomes"]["garbage"] > 0
    retried = Message.objects.filter(mailing_id=mailing_id, attempts__gt=1).count()
    assert retried > size * 0.2


def test_provider_refusing_connections_for_a_while_gets_everything_after_it_returns(
    worker, fake_provider_process, api_client
):
    make_clients(30)
    fake_provider_process.control.outage("refuse", 4)
    refused_from = time.time()

    mailing_id = create_mailing(api_client)

    wait_until(lambda: all_final(mailing_id, 30), timeout=45, message="delivery after the outage")
    assert counts_by_status(mailing_id) == {"sent": 30}
    assert min(at for _, at in fake_provider_process.control.accepted()) >= refused_from + 3.5
    assert fake_provider_process.control.stats()["duplicates"] == 0


def test_slow_provider_and_an_end_time_leave_no_send_after_the_end(worker, fake_provider_process, api_client):
    fake_provider_process.control.configure(latency=1.5)
    make_clients(600)

    mailing_id = create_mailing(api_client, ends_in=4)

    end = Mailing.objects.get(pk=mailing_id).end_at
    wait_until(lambda: all_final(mailing_id, 600), timeout=30, message="the rest to expire")
    counts = counts_by_status(mailing_id)
    assert set(counts) <= {"sent", "expired", "unknown"} and counts["sent"] and counts["expired"]
    stats = fake_provider_process.control.stats(after=end.timestamp())
    assert stats["accepted_after"] == 0
    assert counts["sent"] == stats["accepted_total"] == stats["unique_accepted"]
    # Every request that reached the provider is sent or unknown (cut at the end), never expired.
    assert counts["sent"] + counts.get("unknown", 0) == stats["requests_total"]
    print(f"\nslow provider past the end: {counts}")
    assert not Message.objects.filter(mailing_id=mailing_id, status="sent", sent_at__gt=end).exists()


def test_refused_token_fails_nothing_and_sending_resumes_once_it_is_accepted(
    worker, fake_provider_process, api_client
):
    fake_provider_process.control.configure(token="a-token-the-worker-does-not-have")
    make_clients(20)

    mailing_id = create_mailing(api_client)

    wait_until(
        lambda: fake_provider_process.control.stats()["outcomes"]["unauthorized"] > 0,
        timeout=15,
        message="a refused request",
    )
    time.sleep(2.5)
    counts = counts_by_status(mailing_id)
    assert counts.get("pending", 0) >= 19 and counts.get("sending", 0) <= 1  # the one request sent alone
    # After each pause one request tries the token alone, not the whole queue again.
    assert fake_provider_process.control.stats()["outcomes"]["unauthorized"] <= 20 + 2 * 4
    assert "refused our token" in worker.log.read_text()

    fake_provider_process.control.configure(token=TOKEN)

    wait_until(lambda: all_final(mailing_id, 20), timeout=30, message="sending to resume")
    assert counts_by_status(mailing_id) == {"sent": 20}
    assert fake_provider_process.control.stats()["duplicates"] == 0


def test_worker_killed_mid_mailing_loses_nothing_and_duplicates_only_what_was_in_flight(
    worker, fake_provider_process, api_client
):
    fake_provider_process.control.configure(latency=0.05)
    make_clients(3000)
    mailing_id = create_mailing(api_client)
    wait_until(
        lambda: Message.objects.filter(mailing_id=mailing_id, status="sent").count() > 600,
        timeout=30,
        message="sending to be well under way",
        interval=0.05,
    )

    worker.kill()
    in_flight_at_kill = Message.objects.filter(mailing_id=mailing_id, status="sending").count()
    assert Message.objects.filter(mailing_id=mailing_id, status="pending").exists()
    worker.start()
    restarted = time.monotonic()

    wait_until(
        lambda: all_final(mailing_id, 3000), timeout=60, message="the mailing to finish after the restart"
    )
    stats = fake_provider_process.control.stats()
    print(
        f"\nkill -9: {in_flight_at_kill} in flight, {stats['duplicates']} duplicates, "
        f"last final {time.monotonic() - restarted:.1f} s after the restart"
    )
    assert counts_by_status(mailing_id) == {"sent": 3000}
    assert stats["unique_accepted"] == 3000
    assert stats["duplicates"] <= in_flight_at_kill


def test_with_lost_claims_unknown_a_killed_worker_sends_nothing_twice(
    services_up, fake_provider_process, api_client, tmp_path
):
    fake_provider_process.control.configure(latency=0.05)
    make_clients(3000)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        SENDER_LOST_CLAIMS="unknown",
    ) as worker:
        mailing_id = create_mailing(api_client)
        wait_until(
            lambda: sent_count(mailing_id) > 600,
            timeout=30,
            message="sending to be well under way",
            interval=0.05,
        )
        worker.kill()
        claimed_at_kill = Message.objects.filter(mailing_id=mailing_id, status="sending").count()
        worker.start()
        wait_until(
            lambda: all_final(mailing_id, 3000), timeout=60, message="the mailing to finish after the restart"
        )

    stats = fake_provider_process.control.stats()
    counts = counts_by_status(mailing_id)
    print(
        f"\nkill -9, lost claims unknown: {claimed_at_kill} claimed, {counts}, "
        f"{stats['duplicates']} duplicates"
    )
    assert stats["duplicates"] == 0
    # What the dead sender held ends unknown, whether it had sent it or not; the rest is sent.
    assert counts == {"sent": 3000 - claimed_at_kill, "unknown": claimed_at_kill}
    assert stats["unique_accepted"] >= counts["sent"]


def test_rabbitmq_as_broker_runs_a_scheduled_mailing(
    services_up, fake_provider_process, api_client, tmp_path
):
    amqp_url = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    require_rabbitmq(amqp_url)
    queue = "mailing-e2e"  # the tests' own queue on a shared broker, deleted afterwards
    worker = Worker(
        broker_url=amqp_url,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        CELERY_TASK_DEFAULT_QUEUE=queue,
    )
    try:
        worker.start()
        make_clients(15)
        # Starts in the future: beat's scanner in the worker launches it, every task goes through RabbitMQ.
        mailing_id = create_mailing(api_client, starts_in=2)

        wait_until(lambda: all_final(mailing_id, 15), timeout=30, message="delivery through RabbitMQ")
        assert counts_by_status(mailing_id) == {"sent": 15}
        assert fake_provider_process.control.stats()["duplicates"] == 0
    finally:
        worker.stop()
        delete_queue(amqp_url, queue)


def sent_count(mailing_id: int) -> int:
    return Message.objects.filter(mailing_id=mailing_id, status="sent").count()


def test_warm_shutdown_mid_mailing_sends_nothing_twice_and_leaves_no_claim_behind(
    worker, fake_provider_process, api_client
):
    fake_provider_process.control.configure(latency=0.3)
    make_clients(1500)
    mailing_id = create_mailing(api_client)
    wait_until(
        lambda: sent_count(mailing_id) > 200, timeout=30, message="sending to be under way", interval=0.05
    )

    worker.terminate()

    counts = counts_by_status(mailing_id)
    assert counts.get("sending", 0) == 0, counts  # every claim written back or given back
    assert not Message.objects.filter(mailing_id=mailing_id, status="pending", lease_until__isnull=False)
    assert counts.get("unknown", 0) == 0
    worker.start()
    wait_until(lambda: all_final(mailing_id, 1500), timeout=60, message="the rest after the restart")
    stats = fake_provider_process.control.stats()
    print(f"\nSIGTERM at {counts.get('sent')} sent: duplicates {stats['duplicates']}")
    assert counts_by_status(mailing_id) == {"sent": 1500}
    assert (stats["unique_accepted"], stats["duplicates"]) == (1500, 0)


def test_small_mailings_created_beside_a_big_one_are_delivered_before_it_ends(
    services_up, fake_provider_process, api_client, tmp_path
):
    """E2E_FAIR="latency,big,small mailings,their clients,in flight per sender" sizes the run; the
    issue's figure: E2E_FAIR=5,3000,10,20,200 (and E2E_FAIR=5,3000,0,20,200 for the big one alone).
    """
    latency, big_size, small_count, small_size, in_flight = map(
        float, os.environ.get("E2E_FAIR", "1,800,5,10,20").split(",")
    )
    big_size, small_count, small_size = int(big_size), int(small_count), int(small_size)
    fake_provider_process.control.configure(latency=latency)
    worker = Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        SENDER_CONCURRENCY=str(int(in_flight)),
        PROVIDER_READ_TIMEOUT=str(latency + 2),
    ).start()
    try:
        make_clients(big_size, tag="big")
        small_tags = [f"small{n}" for n in range(small_count)]
        for tag in small_tags:
            make_clients(small_size, tag=tag)
        big = create_mailing(api_client, filter_tag="big")
        time.sleep(latency)  # the big one's first wave is in flight
        created = {create_mailing(api_client, filter_tag=tag): time.time() for tag in small_tags}

        wait_until(lambda: all_final(big, big_size), timeout=120, message="the big mailing to finish")
    finally:
        worker.stop()
    accepted = fake_provider_process.control.accepted()
    big_ids = set(Message.objects.filter(mailing_id=big).values_list("id", flat=True))
    big_times = [at for msg_id, at in accepted if msg_id in big_ids]
    delivered_after = {}
    for mailing_id, at in created.items():
        ids = set(Message.objects.filter(mailing_id=mailing_id).values_list("id", flat=True))
        assert counts_by_status(mailing_id) == {"sent": small_size}
        delivered_after[mailing_id] = max(t for msg_id, t in accepted if msg_id in ids) - at
    delays = sorted(round(seconds, 1) for seconds in delivered_after.values())
    big_rate = big_size / (max(big_times) - Mailing.objects.get(pk=big).created_at.timestamp())
    print(f"\nsmall mailings delivered after creation (s): {delays}; big one: {big_rate:.1f} msg/s")
    assert all(created[mailing_id] + delay < max(big_times) for mailing_id, delay in delivered_after.items())
    assert fake_provider_process.control.stats()["duplicates"] == 0
