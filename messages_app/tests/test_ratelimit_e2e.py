"""End to end: a provider that allows so many sends a second and answers 429 above it, a real worker
with two pool processes (two senders on the mailing), Redis and PostgreSQL.

Whether the service learns the rate from the 429s or is told it (`PROVIDER_RATE_LIMIT`), every message
ends sent exactly once: a 429 is a signal to slow down, never a failure of the message or of the
provider, so no message fails and the breaker never pauses sending.
"""

import pytest

from fake_provider.client import FakeProviderProcess
from harness.waiting import wait_until
from messages_app.models import ProviderPause

from .e2e import FAKE_PROVIDER_SEED, TOKEN, Worker, all_final, counts_by_status
from .test_pipeline_e2e import accepted_ids, create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ALLOWANCE = 40  # sends per second the provider accepts
CLIENTS = 200  # five seconds of the allowance


@pytest.fixture
def rate_limited_provider(services_up):
    """The fake provider as a process, allowing ALLOWANCE sends a second."""
    with FakeProviderProcess(TOKEN, rate_limit=ALLOWANCE, seed=FAKE_PROVIDER_SEED) as fake:
        yield fake


@pytest.mark.parametrize(
    "configured_rate",
    # A little under the allowance, as an operator would set it: the provider's own bucket and ours
    # do not start at the same instant.
    ["", str(ALLOWANCE * 0.9)],
    ids=["learned-from-429s", "PROVIDER_RATE_LIMIT"],
)
def test_a_rate_limited_provider_gets_every_message_once_without_failures_or_pauses(
    configured_rate, rate_limited_provider, services_up, api_client, tmp_path
):
    make_clients(CLIENTS)
    with Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=rate_limited_provider,
        workdir=tmp_path,
        PROVIDER_RATE_LIMIT=configured_rate,
    ):
        mailing_id = create_mailing(api_client)
        wait_until(lambda: all_final(mailing_id, CLIENTS), timeout=60, message="every message to be final")

    assert counts_by_status(mailing_id) == {"sent": CLIENTS}
    assert len(accepted_ids(rate_limited_provider)) == CLIENTS  # none sent twice
    assert not ProviderPause.objects.exists()  # the breaker never tripped on the 429s
    stats = rate_limited_provider.control.stats()
    throttled = stats["outcomes"].get("throttled", 0)
    rate = configured_rate or "learned"
    print(f"\nrate-limited provider, rate {rate}: {throttled} of {stats['requests_total']} answers 429")
    if configured_rate:
        # Paced below the allowance from the first request: 429s are the rare collision of two buckets.
        assert throttled <= 0.05 * stats["requests_total"], stats
    else:
        # Nobody told the senders the rate: they met the limit, and learned it from there. Most of
        # the 429s come in the first second, before anything is learned (65 of 265 answers in one
        # run); senders that ignored the 429s and only retried got 2,232 of 2,432 answers 429.
        assert 0 < throttled < 0.5 * stats["requests_total"], stats
