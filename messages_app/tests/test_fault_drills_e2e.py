"""Fault drills: a real worker, PostgreSQL, Redis and the fake provider, with one fault staged each.

After each: every message final by the end + 60 s, no send after the end, one row per
(mailing, client); duplicates are counted and printed (run with -s to see the figures).
"""

import os
import statistics
import time
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from bench import processes
from fake_provider.client import FakeProviderProcess, free_port
from harness.processes import Process
from harness.waiting import wait_until
from mailings.models import Mailing
from messages_app.models import Message, SenderSlot

from .e2e import Worker, all_final, counts_by_status
from .test_pipeline_e2e import create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = float(os.environ.get("E2E_OUTAGE_SECONDS", "120"))


@pytest.fixture
def started(tmp_path):
    """Processes a drill starts, stopped afterwards whatever happens."""
    running = []
    yield running
    for process in reversed(running):
        process.stop()


@pytest.fixture
def start_worker(services_up, fake_provider_process, tmp_path, started):
    """Starts a worker on the tests' Redis (broker and cache), stopped after the drill."""

    def start(**options) -> Worker:
        worker = Worker(
            broker_url=services_up,
            cache_url=services_up,
            provider=fake_provider_process,
            workdir=tmp_path,
            **options,
        ).start()
        started.append(worker)
        return worker

    return start


def check_drill(fake_provider_process: FakeProviderProcess, mailings: dict[int, int], what: str) -> dict:
    """Waits for every message to be final (at the latest 60 s after its mailing's end), then checks."""
    for mailing_id, size in mailings.items():
        end = Mailing.objects.get(pk=mailing_id).end_at
        left = (end - timezone.now()).total_seconds() + 60
        wait_until(
            lambda m=mailing_id, n=size: all_final(m, n), timeout=max(left, 1), message=f"{what}: all final"
        )
        rows = Message.objects.filter(mailing_id=mailing_id)
        assert rows.count() == size
        assert not rows.values("client_id").annotate(n=Count("id")).filter(n__gt=1).exists()
        assert fake_provider_process.control.stats(after=end.timestamp())["accepted_after"] == 0
    stats = fake_provider_process.control.stats()
    counts = {mailing_id: counts_by_status(mailing_id) for mailing_id in mailings}
    print(f"\n{what}: {counts}, duplicates {stats['duplicates']}")
    return stats


def start_redis(port: int, logdir) -> Process:
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = Process(command, log=logdir / f"redis-{port}.log").start()
    server.wait_for_port(port, timeout=10)  # nothing to load (no persistence): listening is ready
    return server


def test_redis_restarted_mid_mailing(fake_provider_process, api_client, tmp_path, started):
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = start_redis(port, tmp_path)
    started.append(server)
    fake_provider_process.control.configure(latency=0.3)
    worker = Worker(
        broker_url=url,
        cache_url=url,
        provider=fake_provider_process,
        workdir=tmp_path,
        SENDER_CONCURRENCY="10",
    ).start()
    started.append(worker)
    make_clients(600, tag="first")
    first = create_mailing(api_client, ends_in=120, filter_tag="first")
    wait_until(lambda: counts_by_status(first).get("sent", 0) > 50, timeout=30, message="sending")

    server.stop()  # broker and cache gone: nothing is kept
    started.remove(server)
    time.sleep(2)
    started.append(start_redis(port, tmp_path))
    make_clients(40, tag="after")
    # Its save hook enqueues to the tests' broker, where nobody listens: the worker's scanner
    # launches it through the new Redis.
    after = create_mailing(api_client, ends_in=120, filter_tag="after")

    stats = check_drill(fake_provider_process, {first: 600, after: 40}, "Redis restarted")
    assert stats["duplicates"] == 0


def test_beat_stopped_for_a_minute_while_a_worker_is_killed(
    fake_provider_process, api_client, tmp_path, started, start_worker
):
    beat_stopped_at = time.monotonic()
    fake_provider_process.control.configure(latency=0.3)
    worker = start_worker(beat=False, SENDER_CONCURRENCY="10")
    make_clients(400, tag="now")
    make_clients(30, tag="later")
    # Started without beat: the save hook launches it; a scheduled one waits for beat's scanner.
    now_id = create_mailing(api_client, ends_in=180, filter_tag="now")
    later_id = create_mailing(api_client, starts_in=5, ends_in=180, filter_tag="later")
    wait_until(lambda: counts_by_status(now_id).get("sent", 0) > 60, timeout=30, message="sending")
    worker.kill()
    in_flight = counts_by_status(now_id).get("sending", 0)
    worker.start()

    # No beat, hence no sweeper: the senders release the dead one's leases themselves.
    wait_until(lambda: all_final(now_id, 400), timeout=50, message="recovery without beat")
    assert not Message.objects.filter(mailing_id=later_id).exists()
    time.sleep(max(0.0, 60 - (time.monotonic() - beat_stopped_at)))
    beat_dir = tmp_path / "beat"
    beat_dir.mkdir()
    started.append(processes.beat(worker.env, beat_dir).start())

    stats = check_drill(fake_provider_process, {now_id: 400, later_id: 30}, "beat stopped for a minute")
    assert stats["duplicates"] <= in_flight


def test_two_beats_at_once(fake_provider_process, api_client, tmp_path, started, start_worker):
    fake_provider_process.control.configure(latency=0.1)
    worker = start_worker(SENDER_CONCURRENCY="10")
    second_beat = tmp_path / "second-beat"
    second_beat.mkdir()
    started.append(processes.beat(worker.env, second_beat).start())
    make_clients(300, tag="scheduled")
    make_clients(100, tag="now")

    scheduled = create_mailing(api_client, starts_in=3, ends_in=120, filter_tag="scheduled")
    immediate = create_mailing(api_client, ends_in=120, filter_tag="now")

    stats = check_drill(fake_provider_process, {scheduled: 300, immediate: 100}, "two beats at once")
    assert stats["duplicates"] == 0


def test_provider_503_for_two_minutes_under_api_read_load(fake_provider_process, api_client, start_worker):
    # Four pool processes, hence four senders, for mailings that allow two each.
    start_worker(concurrency=4)
    make_clients(500)
    fake_provider_process.control.outage("503", OUTAGE_SECONDS)
    mailing_id = create_mailing(api_client, ends_in=OUTAGE_SECONDS + 60)
    most_senders, api_seconds = 0, []
    outage_ends = time.monotonic() + OUTAGE_SECONDS
    while time.monotonic() < outage_ends:
        started_at = time.monotonic()
        assert api_client.get("/api/v1/mailings/statistics/").status_code == 200
        assert api_client.get(f"/api/v1/mailings/{mailing_id}/statistics/").status_code == 200
        api_seconds.append((time.monotonic() - started_at) / 2)
        claiming = Message.objects.filter(mailing_id=mailing_id, status="sending")
        holders = set(claiming.values_list("claimed_by", flat=True))
        slots = SenderSlot.objects.filter(mailing_id=mailing_id, lease_until__gt=timezone.now())
        most_senders = max(most_senders, len(holders), slots.exclude(holder="").count())
        time.sleep(0.05)

    stats = check_drill(fake_provider_process, {mailing_id: 500}, f"provider 503 for {OUTAGE_SECONDS:.0f} s")
    p95 = statistics.quantiles(api_seconds, n=20)[-1] * 1000
    print(f"most senders on the mailing: {most_senders}; API p95 {p95:.0f} ms over {len(api_seconds)} reads")
    assert 1 <= most_senders <= 2
    assert counts_by_status(mailing_id) == {"sent": 500}
    assert stats["duplicates"] == 0
    assert Mailing.objects.get(pk=mailing_id).end_at > timezone.now() - timedelta(seconds=60)
