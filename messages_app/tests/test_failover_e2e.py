"""End to end: two fake providers as processes share a mailing by weight through a real worker
(two senders), PostgreSQL and Redis; one of them starts refusing connections mid-mailing.

Every message ends sent, each accepted by one provider (duplicates at most the requests in flight
to the failing one), the failing provider's share moves to the other within seconds, and the
failing provider alone is paused.
"""

import time

import pytest

from fake_provider.client import FakeProviderProcess
from harness.sender_logs import attempts_on, traffic_moved_after
from harness.waiting import wait_until
from messages_app.models import Message, ProviderPause
from providers.models import Provider

from .e2e import FAKE_PROVIDER_SEED, Worker, all_final, counts_by_status
from .test_pipeline_e2e import accepted_ids, create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 2000
LATENCY = 0.05


@pytest.fixture
def two_providers(services_up):
    with (
        FakeProviderProcess("token-a", latency=LATENCY, seed=FAKE_PROVIDER_SEED) as a,
        FakeProviderProcess("token-b", latency=LATENCY, seed=FAKE_PROVIDER_SEED) as b,
    ):
        for name, fake in (("a", a), ("b", b)):
            Provider.objects.create(
                name=name, url=fake.url, credentials_env=f"E2E_PROVIDER_{name.upper()}_TOKEN"
            )
        yield a, b


def test_a_provider_refusing_connections_mid_mailing_hands_its_share_to_the_other(
    two_providers, services_up, api_client, tmp_path
):
    a, b = two_providers
    make_clients(CLIENTS)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=a,  # PROVIDER_URL / PROVIDER_TOKEN: unused while provider rows are enabled
        workdir=tmp_path,
        E2E_PROVIDER_A_TOKEN="token-a",
        E2E_PROVIDER_B_TOKEN="token-b",
    ):
        mailing_id = create_mailing(api_client)
        wait_until(
            lambda: Message.objects.filter(mailing_id=mailing_id, status="sent").count() >= 0.3 * CLIENTS,
            timeout=60,
            message="30 % of the messages sent",
        )
        a.control.outage("refuse", 600)
        failed_at = time.time()
        wait_until(lambda: all_final(mailing_id, CLIENTS), timeout=120, message="every message to be final")

    assert counts_by_status(mailing_id) == {"sent": CLIENTS}
    on_a, on_b = accepted_ids(a), accepted_ids(b)
    ids = set(Message.objects.filter(mailing_id=mailing_id).values_list("id", flat=True))
    assert set(on_a) | set(on_b) == ids  # nothing lost
    duplicates = len(on_a) + len(on_b) - len(ids)
    assert duplicates <= 100  # at most what was in flight to a when it failed (two senders)
    assert on_a and on_b  # both took a share before the failure
    assert set(Message.objects.filter(mailing_id=mailing_id).values_list("provider", flat=True)) == {"a", "b"}
    assert set(ProviderPause.objects.values_list("provider", flat=True)) == {"a"}
    moved_after = traffic_moved_after(attempts_on("a", [tmp_path / "worker.log"]), failed_at)
    assert moved_after < 5, moved_after
    assert any(at > failed_at + moved_after for _, at in b.control.accepted())
    print(
        f"\nfailover: {len(on_a)} accepted by a, {len(on_b)} by b, {duplicates} duplicates, "
        f"a's traffic on b {moved_after:.1f} s after the failure"
    )
