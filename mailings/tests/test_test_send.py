"""Test send: the mailing's text to a few clients now, through a worker task and the fake provider
over real HTTP, outside the mailing's messages, throttled per user."""

from datetime import timedelta

import pytest
from celery import current_app
from django.urls import reverse
from django.utils import timezone

from clients.models import Client
from clients.tests.factories import ClientFactory
from fake_provider.client import FakeProviderProcess
from mailings.models import TestSend
from mailings.tests.factories import MailingFactory
from messages_app.models import Message
from messages_app.services import provider_pause
from messages_app.tasks import send_test_messages
from messages_app.tests.e2e import FAKE_PROVIDER_SEED

pytestmark = pytest.mark.django_db(transaction=True)  # outcomes are enqueued after a real commit


@pytest.fixture(scope="module")
def fake_provider_process():
    """One for the module: these tests need no other real service."""
    with FakeProviderProcess("test-send-token", seed=FAKE_PROVIDER_SEED) as fake:
        yield fake


@pytest.fixture(autouse=True)
def provider_settings(settings, fake_provider_process):
    settings.PROVIDER_URL, settings.PROVIDER_TOKEN = fake_provider_process.url, fake_provider_process.token


@pytest.fixture
def enqueued(monkeypatch):
    """Tasks enqueued by name, recorded instead of sent to a broker."""
    calls = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **kw: calls.append((name, args)))
    return calls


@pytest.fixture
def worker_runs_at_once(monkeypatch):
    """The worker's side, run in this process as soon as the task is enqueued after commit."""
    tasks = {"messages_app.tasks.send_test_messages": send_test_messages}
    monkeypatch.setattr(current_app, "send_task", lambda name, args=(), **kw: tasks[name](*args))


def url(mailing) -> str:
    return reverse("mailing-test", args=[mailing.pk])


def outcomes(api_client, mailing) -> list[dict]:
    """The mailing's test sends as the API lists them, newest first."""
    return api_client.get(url(mailing)).data["results"]


def test_each_client_gets_the_text_and_its_outcome_comes_back(api_client, fake_provider_process, monkeypatch):
    mailing = MailingFactory(text="Try me")
    reached, gone = ClientFactory(), ClientFactory()
    gone_id = gone.pk
    fake_provider_process.control.reset()

    # The deleted client is known when the request is made, gone when the worker sends.
    def delete_before_sending(name, args=(), **kw):
        Client.objects.filter(pk=gone_id).delete()
        send_test_messages(*args)

    monkeypatch.setattr(current_app, "send_task", delete_before_sending)
    response = api_client.post(url(mailing), {"client_ids": [reached.pk, gone_id]})

    assert response.status_code == 202, response.data
    listed = {row["client"]: (row["status"], row["detail"]) for row in outcomes(api_client, mailing)}
    assert listed == {reached.pk: ("sent", ""), None: ("failed", "client was deleted")}
    accepted = [msg_id for msg_id, _ in fake_provider_process.control.accepted()]
    assert accepted == [TestSend.objects.get(client=reached).provider_id]
    assert not Message.objects.exists()  # outside the mailing's messages and statistics


def test_a_refusal_is_the_outcome(api_client, fake_provider_process, settings, worker_runs_at_once):
    settings.PROVIDER_TOKEN = "wrong"
    mailing, client = MailingFactory(), ClientFactory()

    api_client.post(url(mailing), {"client_ids": [client.pk]})

    [outcome] = outcomes(api_client, mailing)
    assert outcome["status"] == "failed"
    assert "token" in outcome["detail"]


def test_a_provider_slower_than_the_request_timeout_is_the_outcome(
    api_client, fake_provider_process, settings, worker_runs_at_once
):
    settings.PROVIDER_REQUEST_TIMEOUT = 0.3
    fake_provider_process.control.configure(latency=2.0)
    mailing, client = MailingFactory(), ClientFactory()
    try:
        api_client.post(url(mailing), {"client_ids": [client.pk]})
    finally:
        fake_provider_process.control.configure(latency=0)

    [outcome] = outcomes(api_client, mailing)
    assert (outcome["status"], outcome["detail"]) == ("failed", "no answer within 0.3 s")


def test_the_answer_comes_at_once_with_the_pending_test_sends(
    api_client, enqueued, django_assert_max_num_queries
):
    mailing, clients = MailingFactory(), ClientFactory.create_batch(2)

    # A bounded number of queries: the request does not wait for the worker, re-reading the rows.
    with django_assert_max_num_queries(12):
        response = api_client.post(url(mailing), {"client_ids": [client.pk for client in clients]})

    assert response.status_code == 202
    assert [row["status"] for row in response.data] == ["pending", "pending"]
    ids = [row["id"] for row in response.data]
    assert enqueued == [("messages_app.tasks.send_test_messages", (ids,))]


def test_pending_test_sends_are_listed_until_the_worker_records_them(api_client, enqueued):
    mailing, client = MailingFactory(), ClientFactory()

    response = api_client.post(url(mailing), {"client_ids": [client.pk]})
    listed = api_client.get(url(mailing))

    assert response.status_code == 202
    assert [row["status"] for row in response.data] == ["pending"]
    assert enqueued == [("messages_app.tasks.send_test_messages", ([response.data[0]["id"]],))]
    assert listed.status_code == 200
    assert [row["id"] for row in listed.data["results"]] == [response.data[0]["id"]]


def test_a_redelivered_task_does_not_send_again(api_client, fake_provider_process, enqueued, settings):
    fake_provider_process.control.reset()
    ids = api_client.post(url(MailingFactory()), {"client_ids": [ClientFactory().pk]}).data

    send_test_messages([ids[0]["id"]])
    send_test_messages([ids[0]["id"]])

    assert len(fake_provider_process.control.accepted()) == 1


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"client_ids": []},
        {"client_ids": list(range(1, 12))},
        {"client_ids": [999999]},
        {"client_ids": "1"},
    ],
)
def test_bad_client_lists_are_field_errors(api_client, body, enqueued):
    response = api_client.post(url(MailingFactory()), body)

    assert response.status_code == 400
    assert "client_ids" in response.data
    assert not TestSend.objects.exists()
    assert enqueued == []


@pytest.mark.usefixtures("own_cache")
def test_test_sends_are_throttled_per_user(api_client, enqueued, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"test_send": "2/minute"}}
    mailing, client = MailingFactory(), ClientFactory()

    answers = [api_client.post(url(mailing), {"client_ids": [client.pk]}).status_code for _ in range(3)]

    assert answers == [202, 202, 429]
    assert api_client.get(url(mailing)).status_code == 200  # listing is not throttled


def test_a_test_send_waits_on_the_shared_pause_as_senders_do(
    api_client, fake_provider_process, enqueued, settings
):
    fake_provider_process.control.reset()
    ids = api_client.post(url(MailingFactory()), {"client_ids": [ClientFactory().pk]}).data
    provider_pause(until=timezone.now() + timedelta(minutes=1))

    send_test_messages([ids[0]["id"]])

    send = TestSend.objects.get(pk=ids[0]["id"])
    assert (send.status, send.detail) == (TestSend.Status.FAILED, "sending paused")
    assert fake_provider_process.control.stats()["requests_total"] == 0


def test_test_sends_go_through_the_provider_rows_and_their_routes(
    api_client, fake_provider_process, enqueued, settings, monkeypatch
):
    from providers.models import Provider

    settings.PROVIDER_URL = "http://127.0.0.1:9/v1"  # unused once a provider row is enabled
    monkeypatch.setenv("TEST_SEND_PROVIDER_TOKEN", fake_provider_process.token)
    Provider.objects.create(
        name="rows",
        url=fake_provider_process.url,
        credentials_env="TEST_SEND_PROVIDER_TOKEN",
        operators_excluded=["999"],
    )
    fake_provider_process.control.reset()
    routed, unroutable = ClientFactory(operator_code="916"), ClientFactory(operator_code="999")
    ids = [
        row["id"]
        for row in api_client.post(url(MailingFactory()), {"client_ids": [routed.pk, unroutable.pk]}).data
    ]

    send_test_messages(ids)

    sends = {send.client_id: send for send in TestSend.objects.filter(pk__in=ids)}
    assert sends[routed.pk].status == TestSend.Status.SENT
    assert (sends[unroutable.pk].status, sends[unroutable.pk].detail) == (
        TestSend.Status.FAILED,
        "no provider takes operator code 999",
    )
    assert fake_provider_process.control.stats()["requests_total"] == 1

    monkeypatch.delenv("TEST_SEND_PROVIDER_TOKEN")
    again = api_client.post(url(MailingFactory()), {"client_ids": [routed.pk]}).data[0]["id"]
    send_test_messages([again])
    assert TestSend.objects.get(pk=again).detail == "no enabled provider has its token in the environment"
