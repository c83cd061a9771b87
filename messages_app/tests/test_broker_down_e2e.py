"""End to end: a mailing created while the web cannot reach the broker answers 201, and beat's
scanner launches it once a worker runs: every client gets it once."""

import pytest

from harness.waiting import wait_until
from mailings.models import Mailing
from messages_app.models import Message

from .e2e import Worker, all_final, counts_by_status
from .test_pipeline_e2e import accepted_ids, create_mailing, make_clients

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_mailing_created_with_the_broker_down_is_sent_by_the_scanner(
    broker_down, services_up, fake_provider_process, api_client, tmp_path
):
    make_clients(20)

    mailing_id = create_mailing(api_client)  # asserts 201: the launch task could not be enqueued

    assert Mailing.objects.get(pk=mailing_id).fanout_completed_at is None
    assert not Message.objects.filter(mailing_id=mailing_id).exists()
    with Worker(
        broker_url=services_up, cache_url=services_up, provider=fake_provider_process, workdir=tmp_path
    ):
        wait_until(lambda: all_final(mailing_id, 20), timeout=60, message="the scanner to launch the mailing")
    assert counts_by_status(mailing_id) == {"sent": 20}
    assert sorted(accepted_ids(fake_provider_process)) == sorted(
        Message.objects.filter(mailing_id=mailing_id).values_list("id", flat=True)
    )
