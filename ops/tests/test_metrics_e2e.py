"""A real mailing through a real worker: one scrape of /metrics adds up the worker's figures
(multiprocess mode), and the worker's JSON log lines carry the ids."""

import json
import os
from pathlib import Path

import pytest
from django.core.cache import cache
from prometheus_client.parser import text_string_to_metric_families

from fake_provider.client import FakeProviderProcess
from harness.waiting import wait_until
from mailing_service.collectors import cache_key
from messages_app.models import Message
from messages_app.tests.e2e import FAKE_PROVIDER_SEED, TOKEN, Worker, all_final
from messages_app.tests.test_pipeline_e2e import create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CLIENTS = 60


@pytest.fixture
def fake_provider_process(services_up):
    """The fake provider as a process, failing a fifth of the sends and rejecting a tenth."""
    with FakeProviderProcess(TOKEN, error_rate=0.2, reject_rate=0.1, seed=FAKE_PROVIDER_SEED) as fake:
        yield fake


def samples_of(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_one_scrape_shows_the_workers_sending_and_the_databases_state(
    fake_provider_process, services_up, tmp_path, anonymous_client, api_client, settings
):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    worker = Worker(
        broker_url=services_up,
        cache_url=services_up,
        provider=fake_provider_process,
        workdir=tmp_path,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        LOG_FORMAT="json",
    ).start()
    try:
        make_clients(CLIENTS)
        mailing_id = create_mailing(api_client)
        wait_until(lambda: all_final(mailing_id, CLIENTS), timeout=60, message="every message to be final")
    finally:
        worker.stop()
    settings.PROMETHEUS_MULTIPROC_DIR = str(metrics_dir)
    cache.delete(cache_key())

    response = anonymous_client.get("/metrics")

    text = response.content.decode()
    if path := os.environ.get("METRICS_SCRAPE_OUT"):  # the excerpt quoted in docs/operations.md
        Path(path).write_text(text)
    samples = samples_of(text)
    sent = Message.objects.filter(mailing_id=mailing_id, status="sent").count()
    failed = Message.objects.filter(mailing_id=mailing_id, status="failed").count()
    assert samples[("sms_send_attempts_total", (("outcome", "sent"),))] == sent
    assert samples[("sms_send_attempts_total", (("outcome", "failed"),))] == failed
    assert samples[("sms_fanout_messages_created_total", ())] == CLIENTS
    assert samples[("sms_provider_errors_total", (("error_class", "5xx"),))] > 0
    assert samples[("sms_provider_errors_total", (("error_class", "rejected"),))] == failed
    requests = samples[("sms_provider_request_duration_seconds_count", ())]
    assert requests == sent + failed + samples[("sms_send_attempts_total", (("outcome", "retry"),))]
    task = "mailings.tasks.launch_mailing"
    assert samples[("sms_celery_tasks_total", (("state", "succeeded"), ("task", task)))] >= 1
    assert samples[("sms_messages", (("status", "sent"),))] == sent
    assert samples[("sms_messages_due", ())] == 0

    log_text = worker.log.read_text()
    records = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    attempts = [record for record in records if "outcome=" in record["message"]]
    assert len(attempts) == requests
    for record in attempts:
        assert record["mailing_id"] == mailing_id and record["message_id"] and record["client_id"]
    launch = [record for record in records if record["name"] == "messages_app.launch"]
    assert launch and all(record["mailing_id"] == mailing_id for record in launch)
    phones = Message.objects.filter(mailing_id=mailing_id).values_list("client__phone", flat=True)
    assert not any(phone in log_text for phone in phones)
