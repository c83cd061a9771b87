"""The receipt server (`manage.py serve_receipts`): the web's answers to every receipt, queued for
the same writer, many receipts in one push, and 503 while the queue is away."""

import asyncio
import os
import sys

import pytest
import redis
import redis.asyncio as aioredis
import requests
from aiohttp.test_utils import TestClient, TestServer
from django.core.management import CommandError, call_command
from prometheus_client import REGISTRY

import conftest
from fake_provider.client import free_port
from harness.processes import Process
from messages_app import receipts
from messages_app.models import Message
from messages_app.receipt_server import QueueBatcher, receipt_app
from messages_app.sending.receipts import QUEUE_DOWN, Receipt
from messages_app.tests.conftest import OTHER_SECRET, SECRET
from messages_app.tests.test_receipts import dlr_params, sent_message

DELIVERED, UNDELIVERED, ACCEPTED_BY_SMSC = 1, 2, 8


def deferred_count() -> float:
    return REGISTRY.get_sample_value("sms_receipts_total", {"result": "deferred"}) or 0.0


async def post_all(
    queue_url: str, requests: list[tuple[str, dict]], *, together: bool = True, form: bool = False
) -> tuple[list[tuple[int, dict]], int]:
    """Each (provider, params) as Kannel requests it (a GET, or a form POST), all at once or one
    after the other: the answers, and the pushes made."""
    client = aioredis.Redis.from_url(queue_url)
    batcher = QueueBatcher(client, receipts.QUEUE_KEY)
    app = receipt_app(secrets={"kannel": SECRET, "other": OTHER_SECRET}, queue=batcher)
    async with TestClient(TestServer(app)) as http:

        async def one(provider: str, params: dict) -> tuple[int, dict]:
            url = f"/receipts/{provider}/"
            response = await (http.post(url, data=params) if form else http.get(url, params=params))
            return response.status, await response.json()

        if together:
            answers = await asyncio.gather(*(one(provider, params) for provider, params in requests))
        else:
            answers = [await one(provider, params) for provider, params in requests]
    await client.aclose()
    return list(answers), batcher.pushes


def queued() -> list[Receipt]:
    queue = redis.Redis.from_url(conftest.test_redis_url())
    return [Receipt.decoded(raw) for raw in queue.lrange(receipts.QUEUE_KEY, 0, -1)]


def without_time(queued: list[Receipt]) -> list[tuple]:
    return sorted((r.provider, r.message_id, r.delivered, r.reason) for r in queued)


def cases(message_id: int) -> list[tuple[str, dict]]:
    good = dlr_params(message_id, DELIVERED)
    return [
        ("kannel", good),
        ("kannel", dlr_params(message_id, UNDELIVERED, reply="id:1 stat:UNDELIV err:001")),
        ("kannel", dlr_params(message_id, ACCEPTED_BY_SMSC)),  # intermediate: nothing queued
        ("kannel", good | {"sig": "0" * 32}),
        ("other", good),  # signed for another provider
        ("kannel", {key: value for key, value in good.items() if key != "id"} | {"type": "3"}),
        ("nobody", good),
    ]


@pytest.mark.django_db
def test_it_answers_every_receipt_as_the_web_does_and_queues_the_same_receipts(client, receipt_queue):
    message = sent_message()
    requests = cases(message.pk)

    web = [client.get(f"/receipts/{provider}/", params) for provider, params in requests]
    web_queued = queued()
    receipt_queue.delete(receipts.QUEUE_KEY)
    served, _ = asyncio.run(post_all(conftest.test_redis_url(), requests))

    assert served == [(response.status_code, response.json()) for response in web]
    assert [status for status, _ in served] == [202, 202, 202, 403, 403, 400, 404]
    assert set(served[5][1]) == {"id", "type"}  # the bad fields, by name
    assert without_time(queued()) == without_time(web_queued)
    assert len(web_queued) == 2


@pytest.mark.django_db
def test_the_writer_takes_its_receipts_as_the_webs_the_first_final_report_winning(receipt_queue):
    message = sent_message()
    reports = [dlr_params(message.pk, DELIVERED), dlr_params(message.pk, UNDELIVERED, reply="err:001")]

    answers, _ = asyncio.run(
        post_all(
            conftest.test_redis_url(), [("kannel", params) for params in reports], together=False, form=True
        )
    )
    receipts.receipts_write_queued()

    assert [status for status, _ in answers] == [202, 202]
    message.refresh_from_db()
    assert (message.status, message.last_error) == (Message.Status.DELIVERED, "")
    assert message.delivered_at is not None


@pytest.mark.django_db
def test_receipts_that_come_together_go_to_the_queue_in_a_few_pushes(receipt_queue):
    messages = [sent_message() for _ in range(300)]

    answers, pushes = asyncio.run(
        post_all(
            conftest.test_redis_url(),
            [("kannel", dlr_params(message.pk, DELIVERED)) for message in messages],
        )
    )

    assert {status for status, _ in answers} == {202}
    assert sorted(receipt.message_id for receipt in queued()) == sorted(message.pk for message in messages)
    assert pushes <= len(messages) / 10  # a push per receipt would be 300


def test_while_the_queue_is_away_a_receipt_is_answered_503_for_the_provider_to_try_again(receipt_settings):
    before = deferred_count()

    answers, pushes = asyncio.run(
        post_all(f"redis://127.0.0.1:{free_port()}/0", [("kannel", dlr_params(7, DELIVERED))] * 3)
    )

    assert answers == [(503, QUEUE_DOWN)] * 3
    assert pushes == 0
    assert deferred_count() == before + 3


def test_serve_receipts_refuses_to_start_without_a_queue_or_with_a_bad_address(settings):
    settings.RECEIPT_QUEUE_URL = ""
    with pytest.raises(CommandError, match="RECEIPT_QUEUE_URL"):
        call_command("serve_receipts")
    settings.RECEIPT_QUEUE_URL = conftest.test_redis_url()
    with pytest.raises(CommandError, match="host:port"):
        call_command("serve_receipts", bind="8002")


def test_serve_receipts_queues_what_it_is_posted_until_it_is_stopped(receipt_queue, tmp_path):
    port = free_port()
    env = os.environ | {
        "RECEIPT_SECRETS": f"kannel={SECRET}",
        "RECEIPT_QUEUE_URL": conftest.test_redis_url(),
        "DJANGO_SECRET_KEY": "x" * 50,
    }
    command = [sys.executable, "manage.py", "serve_receipts", "--bind", f"127.0.0.1:{port}"]
    with Process(command, env=env, log=tmp_path / "receipts.log") as server:
        server.wait_for_url(f"http://127.0.0.1:{port}/health/live")
        answer = requests.get(
            f"http://127.0.0.1:{port}/receipts/kannel/", dlr_params(41, DELIVERED), timeout=10
        )

        assert (answer.status_code, answer.json()) == (202, {"detail": "accepted"})
        assert [(r.message_id, r.delivered) for r in queued()] == [(41, True)]
    assert server.returncode == 0  # SIGTERM: a clean stop
