"""End to end: pause and resume through the API while two real worker processes send.

The fake provider records when it accepted each message: its clock, not the workers' logs, says
whether sending stopped.
"""

import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from clients.models import Client
from fake_provider.client import FakeProviderProcess
from harness.waiting import wait_until
from mailings.models import Mailing
from messages_app.models import Message

from .e2e import FAKE_PROVIDER_SEED, Worker, counts_by_status, in_flight_pinned_at

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-lifecycle-token"
CLIENTS = 600
# Slow enough to pause halfway: 4 senders x 5 requests in flight at 0.2 s is about 100 msg/s.
SLOW = {**in_flight_pinned_at(5), "SENDERS_PER_MAILING": "4"}
PAUSE_WITHIN = 2.0  # seconds: the promise


@pytest.fixture
def no_provider_pause(services_up) -> None:
    """No pause of the provider left in the tests' Redis by an earlier test."""
    connection = redis.Redis.from_url(services_up)
    connection.delete(*connection.keys("*sender:paused-until*") or ["-"])


@pytest.fixture
def fake_provider_process(services_up):
    with FakeProviderProcess(TOKEN, latency=0.2, seed=FAKE_PROVIDER_SEED) as fake:
        yield fake


@pytest.fixture
def two_workers(services_up, no_provider_pause, fake_provider_process, tmp_path, transactional_db):
    workers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        workers.append(
            Worker(
                broker_url=services_up,
                cache_url=services_up,
                provider=fake_provider_process,
                workdir=tmp_path / name,
                **SLOW,
            )
        )
    try:
        yield [worker.start() for worker in workers]
    finally:
        for worker in workers:
            worker.stop()


def running_mailing(api_client, *, ends_in: float) -> Mailing:
    Client.objects.bulk_create(
        Client(phone=f"79{n:09d}", operator_code="900", timezone="UTC") for n in range(CLIENTS)
    )
    now = timezone.now()
    response = api_client.post(
        "/api/v1/mailings/",
        {
            "start_at": (now - timedelta(seconds=1)).isoformat(),
            "end_at": (now + timedelta(seconds=ends_in)).isoformat(),
            "text": "Paused sale",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    return Mailing.objects.get(pk=response.json()["id"])


def sent(mailing: Mailing) -> int:
    return Message.objects.filter(mailing=mailing, status=Message.Status.SENT).count()


def act(api_client, mailing: Mailing, action: str) -> float:
    """Posts the action; returns the moment it was committed (the response came back)."""
    response = api_client.post(f"/api/v1/mailings/{mailing.pk}/{action}/")
    assert response.status_code == 200, response.content
    return time.time()


def test_pause_stops_every_worker_within_2_s_and_resume_finishes_before_the_end(
    two_workers, fake_provider_process, api_client
):
    mailing = running_mailing(api_client, ends_in=90)
    # A busy machine may start the second worker's sender a little later: wait for both to send.
    wait_until(
        lambda: (
            sent(mailing) >= 100
            and all(f"mailing={mailing.pk} message=" in w.log.read_text() for w in two_workers)
        ),
        timeout=30,
        message="both worker processes sending this mailing, well under way",
    )

    paused_at = act(api_client, mailing, "pause")
    time.sleep(PAUSE_WITHIN + 2)

    after_pause = [at for _, at in fake_provider_process.control.accepted() if at > paused_at]
    latency = max(after_pause, default=paused_at) - paused_at
    print(f"pause latency: last acceptance {latency:.2f} s after the pause ({len(after_pause)} after it)")
    assert latency <= PAUSE_WITHIN
    counts = counts_by_status(mailing.pk)
    assert counts.get("pending", 0) > 0 and set(counts) <= {"sent", "pending"}
    assert not Message.objects.filter(mailing=mailing, status="pending", attempts__gt=0).exists()

    resumed_at = act(api_client, mailing, "resume")
    wait_until(lambda: sent(mailing) == CLIENTS, timeout=60, message="the resumed mailing to finish")

    accepted = fake_provider_process.control.accepted()
    assert len(accepted) == CLIENTS, "no message sent twice"
    assert not [at for _, at in accepted if paused_at + PAUSE_WITHIN < at < resumed_at]
    assert max(at for _, at in accepted) <= mailing.end_at.timestamp()
    assert api_client.get(f"/api/v1/mailings/{mailing.pk}/").json()["state"] == "finished"


def test_a_paused_mailing_past_its_end_cannot_resume_and_its_unsent_messages_expire(
    two_workers, fake_provider_process, api_client
):
    mailing = running_mailing(api_client, ends_in=12)
    wait_until(lambda: sent(mailing) >= 50, timeout=10, message="sending to be under way")

    paused_at = act(api_client, mailing, "pause")
    wait_until(lambda: timezone.now() > mailing.end_at, timeout=15, message="the end to pass")
    refused = api_client.post(f"/api/v1/mailings/{mailing.pk}/resume/")

    assert refused.status_code == 409
    assert "finished" in refused.json()["detail"]
    assert max(at for _, at in fake_provider_process.control.accepted()) <= paused_at + PAUSE_WITHIN
    wait_until(
        lambda: set(counts_by_status(mailing.pk)) == {"sent", "expired"},
        timeout=10,
        message="the sweeper to expire what the end left",
    )
