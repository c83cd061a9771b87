"""Delivery receipts at `/receipts/<provider>/`: authenticated per provider, written once, never
backwards, and in batches when they come in floods."""

import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from console.selectors import stats_report
from fake_provider.client import free_port
from mailings.tests.factories import MailingFactory
from messages_app import receipts, selectors, services
from messages_app.models import Message, MessageTally
from messages_app.sending.outcomes import Outcome, Result
from messages_app.sending.receipts import QUEUE_DOWN, Receipt, kannel_dlr_url, parse_kannel, signature
from messages_app.tests.conftest import OTHER_SECRET, SECRET
from messages_app.tests.factories import MessageFactory

Status = Message.Status


def sent_message(provider="kannel", status=Status.SENT, **fields) -> Message:
    return MessageFactory(status=status, provider=provider, sent_at=timezone.now(), **fields)


def dlr_params(message_id: int, report_type: int, *, provider="kannel", secret=SECRET, reply="") -> dict:
    """What Kannel requests: our dlr-url with its escapes filled in."""
    url = kannel_dlr_url(base_url="http://x", provider=provider, secret=secret, message_id=message_id)
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return params | {"type": str(report_type), "reply": reply}


def post_receipt(client, message_id, report_type, *, provider="kannel", **kwargs):
    return client.get(
        f"/receipts/{provider}/", dlr_params(message_id, report_type, provider=provider, **kwargs)
    )


def tallied(message: Message) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in MessageTally.objects.filter(mailing_id=message.mailing_id):
        counts[row.status] = counts.get(row.status, 0) + row.messages
    return {status: n for status, n in counts.items() if n}


@pytest.mark.django_db
def test_a_delivered_receipt_makes_a_sent_message_delivered(client, receipt_settings):
    message = sent_message()
    answer = post_receipt(client, message.pk, 1)
    assert answer.status_code == 202
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert message.delivered_at is not None and message.delivered_at >= message.sent_at
    assert tallied(message) == {Status.DELIVERED: 1}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("report_type", "reason"),
    [
        (2, "not delivered to the phone: id:7 sub:001 dlvrd:000 stat:UNDELIV err:001"),
        (16, "rejected by the SMSC: id:7 sub:001 dlvrd:000 stat:UNDELIV err:001"),
    ],
)
def test_an_undelivered_receipt_keeps_the_providers_reason(client, receipt_settings, report_type, reason):
    message = sent_message()
    reply = "id:7 sub:001 dlvrd:000 stat:UNDELIV err:001 text:Winter sale"
    assert post_receipt(client, message.pk, report_type, reply=reply).status_code == 202
    message.refresh_from_db()
    assert (message.status, message.last_error, message.delivered_at) == (Status.UNDELIVERED, reason, None)


@pytest.mark.django_db
def test_a_receipt_with_a_bad_signature_is_refused_with_403(client, receipt_settings):
    message = sent_message()
    forged = post_receipt(client, message.pk, 1, secret="guessed")
    other_providers = client.get(
        "/receipts/kannel/", dlr_params(message.pk, 1, provider="other", secret=OTHER_SECRET)
    )
    assert (forged.status_code, other_providers.status_code) == (403, 403)
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.django_db
def test_a_provider_without_a_receipt_secret_takes_no_receipts(client, receipt_settings):
    message = sent_message(provider="default")
    assert post_receipt(client, message.pk, 1, provider="default").status_code == 404
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.django_db
def test_a_repeated_receipt_changes_nothing_and_is_counted_once(client, receipt_settings):
    message = sent_message()
    assert post_receipt(client, message.pk, 1).status_code == 202
    message.refresh_from_db()
    first = message.delivered_at
    assert post_receipt(client, message.pk, 1).status_code == 202
    message.refresh_from_db()
    assert (message.status, message.delivered_at) == (Status.DELIVERED, first)
    assert tallied(message) == {Status.DELIVERED: 1}


@pytest.mark.django_db
def test_a_final_state_never_goes_back(client, receipt_settings):
    delivered, undelivered = sent_message(), sent_message()
    for message, first, later in ((delivered, 1, 2), (undelivered, 2, 1)):
        post_receipt(client, message.pk, first)
        for report_type in (later, 8, 4, 16):  # late contradictions and intermediate reports
            assert post_receipt(client, message.pk, report_type).status_code == 202
    delivered.refresh_from_db()
    undelivered.refresh_from_db()
    assert (delivered.status, undelivered.status) == (Status.DELIVERED, Status.UNDELIVERED)


@pytest.mark.django_db
def test_an_intermediate_report_changes_nothing(client, receipt_settings):
    message = sent_message()
    for report_type in (8, 4):
        assert post_receipt(client, message.pk, report_type).status_code == 202
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.django_db
def test_delivered_may_follow_unknown_but_never_pending_or_failed(client, receipt_settings):
    unknown = sent_message(status=Status.UNKNOWN)
    # Its acceptance is not written yet: without a queue to wait in, the receipt is lost.
    pending = sent_message(status=Status.PENDING)
    failed = sent_message(status=Status.FAILED)
    for message in (unknown, pending, failed):
        post_receipt(client, message.pk, 1)
        message.refresh_from_db()
    assert [m.status for m in (unknown, pending, failed)] == [Status.DELIVERED, Status.PENDING, Status.FAILED]


@pytest.mark.django_db
def test_a_receipt_for_an_unknown_or_foreign_id_is_accepted_logged_and_writes_nothing(
    client, receipt_settings, caplog
):
    foreign = sent_message(provider="other")
    before = list(MessageTally.objects.values_list("id", flat=True))
    for message_id in (foreign.pk, 999_999):
        assert post_receipt(client, message_id, 1).status_code == 202
    foreign.refresh_from_db()
    assert foreign.status == Status.SENT
    assert list(MessageTally.objects.values_list("id", flat=True)) == before
    assert f"ids {foreign.pk}" in caplog.text and "999999" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"id": ""}, {"id"}),
        ({"id": "12a"}, {"id"}),
        ({"id": "١٢"}, {"id"}),  # digits, but not ASCII ones
        ({"type": "3"}, {"type"}),
        ({"type": "%d"}, {"type"}),  # Kannel left its escape unfilled
        ({"sig": ""}, {"sig"}),
        ({"id": "x", "type": ""}, {"id", "type"}),
    ],
)
def test_a_malformed_receipt_is_a_400_naming_the_fields(client, receipt_settings, change, fields):
    message = sent_message()
    answer = client.get("/receipts/kannel/", dlr_params(message.pk, 1) | change)
    assert answer.status_code == 400
    assert set(answer.json()) == fields
    message.refresh_from_db()
    assert message.status == Status.SENT


@pytest.mark.django_db
def test_a_form_post_is_taken_like_kannels_get(client, receipt_settings):
    message = sent_message()
    assert client.post("/receipts/kannel/", dlr_params(message.pk, 1)).status_code == 202
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


def test_the_dlr_url_carries_kannels_escapes_and_no_secret():
    url = kannel_dlr_url(base_url="https://sms.example/", provider="kannel", secret=SECRET, message_id=42)
    assert url.startswith("https://sms.example/receipts/kannel/?id=42&sig=")
    assert url.endswith("&type=%d&reply=%A")
    assert SECRET not in url
    params = dict(parse_qsl(urlsplit(url).query)) | {"type": "1"}
    assert parse_kannel(params, provider="kannel", secret=SECRET, received_at=0.0) == Receipt(
        "kannel", 42, True, "", 0.0
    )
    with pytest.raises(PermissionError):  # the same signature does not serve another message
        parse_kannel(params | {"id": "43"}, provider="kannel", secret=SECRET, received_at=0.0)
    assert signature(SECRET, "kannel", 42) != signature(SECRET, "other", 42)


# --- the batch writer ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_batch_is_written_in_one_transaction_of_a_few_statements(django_assert_max_num_queries):
    messages = [sent_message() for _ in range(300)]
    batch = [
        Receipt("kannel", m.pk, index % 3 != 0, "" if index % 3 else "no", time.time())
        for index, m in enumerate(messages)
    ]
    batch += batch[:50]  # repeats in the same batch
    # Its savepoint (inside the test's transaction) and release, one lookup of the ids, and one
    # UPDATE per (outcome, reason): not one per receipt.
    with django_assert_max_num_queries(5):
        written = services.receipts_record(receipts=batch)
    assert (written.delivered, written.undelivered, written.unchanged, written.unknown) == (200, 100, 50, [])
    assert Message.objects.filter(status=Status.DELIVERED).count() == 200


@pytest.mark.django_db
def test_the_first_final_receipt_of_a_message_in_a_batch_wins():
    message = sent_message()
    now = time.time()
    services.receipts_record(
        receipts=[
            Receipt("kannel", message.pk, False, "expired", now),
            Receipt("kannel", message.pk, True, "", now),
        ]
    )
    message.refresh_from_db()
    assert (message.status, message.last_error) == (Status.UNDELIVERED, "expired")


@pytest.mark.django_db
def test_queued_receipts_wait_for_the_writer_which_writes_them_in_batches(
    client, receipt_settings, receipt_queue, monkeypatch
):
    receipt_settings.RECEIPT_BATCH_SIZE = 40
    messages = [sent_message() for _ in range(100)]
    for message in messages:
        assert post_receipt(client, message.pk, 1).status_code == 202
    assert post_receipt(client, messages[0].pk, 2).status_code == 202  # a late contradiction
    assert Message.objects.filter(status=Status.DELIVERED).count() == 0  # nothing written by the web
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 101

    written = []
    real_record = services.receipts_record

    def record(*, receipts):
        written.append(len(receipts))
        return real_record(receipts=receipts)

    monkeypatch.setattr(services, "receipts_record", record)
    assert receipts.receipts_write_queued() == 101
    assert written == [40, 40, 21]
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 0
    assert Message.objects.filter(status=Status.DELIVERED).count() == 100


@pytest.mark.django_db
def test_a_writer_already_at_work_keeps_a_second_one_out(receipt_settings, receipt_queue):
    message = sent_message()
    receipts.receipts_take([Receipt("kannel", message.pk, True, "", time.time())])
    receipt_queue.set(receipts.WRITER_KEY, "another writer", px=10_000)
    assert receipts.receipts_write_queued() == 0
    receipt_queue.delete(receipts.WRITER_KEY)
    assert receipts.receipts_write_queued() == 1
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


@pytest.mark.django_db
def test_a_receipt_before_its_acceptance_is_written_waits_for_it_in_the_queue(
    receipt_settings, receipt_queue
):
    """A gateway reports within milliseconds; the sender writes its results in batches after."""
    token = uuid.uuid4()
    message = MessageFactory(status=Status.SENDING, claim_token=token)
    receipts.receipts_take([Receipt("kannel", message.pk, True, "", time.time())])
    assert receipts.receipts_write_queued() == 1
    message.refresh_from_db()
    assert message.status == Status.SENDING
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 1  # back in the queue, for the next run

    services.messages_record(
        results=[Result(message.pk, token, Outcome.SENT, 1, provider="kannel")], now=timezone.now()
    )
    assert receipts.receipts_write_queued() == 1
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 0


@pytest.mark.django_db
def test_an_early_receipt_whose_acceptance_never_comes_is_dropped_in_time(receipt_settings, receipt_queue):
    receipt_settings.RECEIPT_EARLY_KEEP = 60
    message = MessageFactory(status=Status.PENDING)
    receipts.receipts_take([Receipt("kannel", message.pk, True, "", time.time() - 61)])
    assert receipts.receipts_write_queued() == 1
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 0
    message.refresh_from_db()
    assert message.status == Status.PENDING


@pytest.mark.django_db
def test_a_batch_the_database_refused_stays_queued_for_the_next_run(
    receipt_settings, receipt_queue, monkeypatch
):
    message = sent_message()
    receipts.receipts_take([Receipt("kannel", message.pk, True, "", time.time())])

    def refuse(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(services, "receipts_record", refuse)
    with pytest.raises(RuntimeError):
        receipts.receipts_write_queued()
    monkeypatch.undo()
    assert receipt_queue.llen(receipts.QUEUE_KEY) == 1
    assert receipts.receipts_write_queued() == 1
    message.refresh_from_db()
    assert message.status == Status.DELIVERED


# --- what the sender stores for receipts to find --------------------------------------------------


@pytest.mark.django_db
def test_an_acceptance_stores_its_provider_and_the_providers_id():
    message = MessageFactory(status=Status.SENDING, claim_token=uuid.uuid4())
    other = MessageFactory(status=Status.SENDING, claim_token=message.claim_token)
    token = message.claim_token
    services.messages_record(
        results=[
            Result(message.pk, token, Outcome.SENT, 1, provider="kannel", provider_message_id="abc-1"),
            Result(other.pk, token, Outcome.SENT, 1, provider="kannel"),
        ],
        now=timezone.now(),
    )
    message.refresh_from_db()
    other.refresh_from_db()
    assert (message.status, message.provider, message.provider_message_id) == (Status.SENT, "kannel", "abc-1")
    assert (other.status, other.provider, other.provider_message_id) == (Status.SENT, "kannel", "")


# --- what the statistics, the console and the daily report show ---------------------------------


@pytest.mark.django_db
def test_receipt_figures_count_delivered_undelivered_awaited_and_no_receipt(receipt_settings):
    receipt_settings.RECEIPT_WAIT = 3600
    now = timezone.now()
    mailing = MessageFactory(status=Status.DELIVERED, provider="kannel").mailing
    Message.objects.filter(mailing=mailing).update(
        sent_at=now - timedelta(seconds=30), delivered_at=now - timedelta(seconds=20)
    )
    MessageFactory(
        mailing=mailing,
        status=Status.DELIVERED,
        provider="kannel",
        sent_at=now - timedelta(seconds=10),
        delivered_at=now,
    )
    MessageFactory(mailing=mailing, status=Status.UNDELIVERED, provider="kannel", sent_at=now)
    MessageFactory(mailing=mailing, status=Status.SENT, provider="kannel", sent_at=now - timedelta(minutes=5))
    MessageFactory(mailing=mailing, status=Status.SENT, provider="kannel", sent_at=now - timedelta(hours=2))
    MessageFactory(mailing=mailing, status=Status.SENT, provider="default", sent_at=now)  # no receipts there
    [figures] = selectors.receipt_figures_by_mailing([mailing.pk], now=now).values()
    assert (figures.delivered, figures.undelivered, figures.awaiting, figures.no_receipt) == (2, 1, 1, 1)
    assert figures.delivered_percent == 50.0  # the awaited one is not counted yet
    assert figures.delay == pytest.approx(10.0)
    by_provider = selectors.receipt_figures_by_provider(since=now - timedelta(days=1), now=now)
    assert list(by_provider) == ["kannel"]


@pytest.mark.django_db
def test_the_console_and_the_daily_report_show_the_receipts(admin_client, receipt_settings):
    now = timezone.now()
    mailing = MailingFactory(
        start_at=now - timedelta(hours=1), end_at=now + timedelta(hours=1), launched_at=now
    )
    MessageFactory.create_batch(
        3, mailing=mailing, status=Status.DELIVERED, provider="kannel", sent_at=now, delivered_at=now
    )
    MessageFactory(
        mailing=mailing,
        status=Status.UNDELIVERED,
        provider="kannel",
        sent_at=now,
        last_error="rejected by the SMSC",
    )

    page = admin_client.get(reverse("admin:mailings_mailing_change", args=[mailing.pk])).content.decode()
    assert '<td data-receipts="delivered">3 (75.0 %)</td>' in page
    assert '<td data-count="undelivered">1</td>' in page
    dashboard = admin_client.get(reverse("console:dashboard")).content.decode()
    assert "<h3>kannel</h3>" in dashboard and '<td data-receipts="undelivered">1</td>' in dashboard

    report = stats_report(since=now - timedelta(hours=1), until=now + timedelta(minutes=1))
    text = render_to_string("console/stats_report.txt", {"report": report, "subject": "Report", "tz": "UTC"})
    assert "RECEIPTS: kannel: delivered 3 (75.0 %), undelivered 1, no receipt 0, awaited 0" in text
    assert "delivered 3, undelivered 1" in text
    assert "delivered 75.0 % of those with a receipt or past the wait" in text


@pytest.mark.django_db
def test_the_mailing_statistics_api_has_the_receipts_and_messages_their_provider(
    api_client, receipt_settings
):
    now = timezone.now()
    message = MessageFactory(status=Status.DELIVERED, provider="kannel", sent_at=now, delivered_at=now)
    answer = api_client.get(f"/api/v1/mailings/{message.mailing_id}/statistics/").json()
    assert answer["receipts"] == {
        "delivered": 1,
        "undelivered": 0,
        "awaiting": 0,
        "no_receipt": 0,
        "delivered_percent": 100.0,
        "delay": 0.0,
    }
    assert answer["messages"]["results"][0]["provider"] == "kannel"
    other = MessageFactory(status=Status.SENT, sent_at=now)
    assert api_client.get(f"/api/v1/mailings/{other.mailing_id}/statistics/").json()["receipts"] is None


@pytest.mark.django_db
def test_while_the_queue_is_away_the_web_answers_503_for_the_provider_to_try_again(client, receipt_settings):
    receipt_settings.RECEIPT_QUEUE_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    message = sent_message()

    response = post_receipt(client, message.pk, 1)

    assert (response.status_code, response.json()) == (503, QUEUE_DOWN)
