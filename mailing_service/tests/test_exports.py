"""CSV exports: a mailing's messages and the client directory, streamed, safe in a spreadsheet."""

import csv
import io
import os
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from clients.models import Client, OptOut
from clients.tests.factories import ClientFactory
from mailing_service.exports import EXPORT_BATCH_SIZE, spreadsheet_safe
from mailings.tests.factories import MailingFactory
from messages_app import services
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[dict]:
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_a_cell_a_spreadsheet_would_run_starts_with_an_apostrophe(start):
    assert spreadsheet_safe(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"


def test_other_cells_are_written_as_they_are():
    assert [spreadsheet_safe(value) for value in ("Anna", "a=b", 3, None)] == ["Anna", "a=b", "3", ""]


def test_a_mailings_export_lists_every_message_with_phones_in_clear_for_operators(api_client):
    mailing = MailingFactory()
    sent = MessageFactory(
        mailing=mailing, client=ClientFactory(phone="79161234567"), status="sent", attempts=1
    )
    failed = MessageFactory(
        mailing=mailing,
        client=ClientFactory(phone="79251234567"),
        status="failed",
        attempts=3,
        last_error="=cmd|' /C calc'!A0",
    )
    MessageFactory(mailing=MailingFactory(), status="sent")  # another mailing's

    rows = read_csv(api_client.get(reverse("mailing-export", args=[mailing.pk])))

    assert [(row["message_id"], row["phone"], row["status"], row["attempts"]) for row in rows] == [
        (str(sent.pk), "79161234567", "sent", "1"),
        (str(failed.pk), "79251234567", "failed", "3"),
    ]
    assert rows[1]["last_error"] == "'=cmd|' /C calc'!A0"
    assert list(rows[0]) == [
        "message_id",
        "client_id",
        "phone",
        "status",
        "provider",
        "attempts",
        "last_error",
        "created_at",
        "sent_at",
        "delivered_at",
    ]


def test_viewers_export_masked_phones_a_deleted_clients_message_keeping_its_recipient(viewer_client):
    mailing = MailingFactory()
    MessageFactory(mailing=mailing, client=ClientFactory(phone="79161234567"))
    MessageFactory(mailing=mailing, client=ClientFactory(phone="79031234599")).client.delete()

    rows = read_csv(viewer_client.get(reverse("mailing-export", args=[mailing.pk])))

    assert [(row["client_id"], row["phone"]) for row in rows][1:] == [("", "7903*****99")]
    assert rows[0]["phone"] == "7916*****67"


def test_the_export_of_a_missing_mailing_is_a_404(api_client):
    response = api_client.get(reverse("mailing-export", args=[999999]), HTTP_ACCEPT="text/csv")

    assert response.status_code == 404


def test_the_client_export_takes_the_lists_filters_and_neutralises_formulas(api_client, viewer_client):
    ClientFactory(phone="79161234567", tag="-2+3", attributes={"name": "Анна"})
    ClientFactory(phone="79251234567", tag="other")

    rows = read_csv(api_client.get(reverse("client-export"), {"tag": "-2+3"}))
    masked = read_csv(viewer_client.get(reverse("client-export")))

    assert [(row["phone"], row["tag"], row["attributes"]) for row in rows] == [
        ("79161234567", "'-2+3", '{"name": "Анна"}')
    ]
    assert [row["phone"] for row in masked] == ["7916*****67", "7925*****67"]


def test_an_export_reads_in_batches(api_client, django_assert_max_num_queries, settings):
    mailing = MailingFactory()
    clients = ClientFactory.create_batch(3)
    for client in clients:
        MessageFactory(mailing=mailing, client=client)
    response = api_client.get(reverse("mailing-export", args=[mailing.pk]))

    # One query per batch and one finding the end: here one batch.
    with django_assert_max_num_queries(2):
        assert len(b"".join(response.streaming_content).splitlines()) == 4


MILLION = 1_000_000


def insert_clients(count: int) -> None:
    series = (
        "SELECT n FROM generate_series(1, %s) AS n"
        if connection.vendor == "postgresql"
        else "WITH RECURSIVE series(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM series WHERE n < %s) "
        "SELECT n FROM series"
    )
    digits = "lpad(n::text, 10, '0')" if connection.vendor == "postgresql" else "printf('%%010d', n)"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO clients_client (phone, operator_code, tag, timezone, created_at, updated_at) "
            f"SELECT '7' || {digits}, '900', '', 'UTC', %s, %s FROM ({series}) AS numbers",
            [timezone.now(), timezone.now(), count],
        )


def resident_bytes() -> int:
    """This process's resident memory now (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_exporting_a_million_messages_holds_one_batch_in_memory(api_client):
    """The whole export passes through this process, which is watched after each chunk: its
    resident memory grows by about one batch, a small part of the file it writes."""
    insert_clients(MILLION)
    now = timezone.now()
    mailing = MailingFactory(start_at=now + timedelta(days=1), end_at=now + timedelta(days=2))
    created = services.messages_create_for_clients(
        mailing_id=mailing.pk, clients=Client.objects.all(), now=now
    )
    assert created == MILLION
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as the database's own statistics would be by the time of an export

    started = time.monotonic()
    response = api_client.get(reverse("mailing-export", args=[mailing.pk]))
    before = peak = resident_bytes()
    written = lines = 0
    for chunk in response.streaming_content:
        written += len(chunk)
        lines += chunk.count(b"\n")
        peak = max(peak, resident_bytes())

    assert lines == MILLION + 1
    growth = peak - before
    print(
        f"export of {MILLION:,} messages: {written / 1e6:.1f} MB written, "
        f"resident memory grew {growth / 1e6:.1f} MB, in {time.monotonic() - started:.1f} s"
    )
    assert written > 50_000_000
    # A batch of EXPORT_BATCH_SIZE rows as tuples and their CSV text is a few MB.
    assert growth < 40_000_000, f"grew {growth / 1e6:.1f} MB with {EXPORT_BATCH_SIZE}-row batches"


def test_the_opt_out_list_exports_with_its_filter_and_masked_phones_for_viewers(api_client, viewer_client):
    OptOut.objects.create(phone="79161234567", source="api", reason="=HYPERLINK(1)")
    OptOut.objects.create(phone="79031234599", source="import", reason="bulk")

    url = reverse("optout-export")
    operators = read_csv(api_client.get(url, {"source": "api"}))
    viewers = read_csv(viewer_client.get(url))

    assert [(row["phone"], row["reason"]) for row in operators] == [("79161234567", "'=HYPERLINK(1)")]
    assert list(operators[0]) == ["id", "phone", "reason", "source", "created_at", "created_by"]
    assert sorted(row["phone"] for row in viewers) == ["7903*****99", "7916*****67"]
