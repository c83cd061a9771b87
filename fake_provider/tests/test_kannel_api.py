"""The fake's Kannel-shaped API: sendsms answered as Kannel answers, and delivery reports requested
from each message's dlr-url, drawn late, lost, twice or out of order."""

import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from fake_provider.client import FakeProviderProcess
from harness.waiting import wait_until

TOKEN = "kannel-token"


@pytest.fixture(scope="module")
def fake():
    with FakeProviderProcess(TOKEN) as fake:
        yield fake


@pytest.fixture
def receiver():
    """Our receipt endpoint as the fake meets it: records each report's query, answers 202."""
    reports: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            reports.append(dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/receipts/fake/", reports
    server.shutdown()


@pytest.fixture
def control(fake):
    fake.control.configure(
        seed=1,
        receipt_undelivered_rate=0.0,
        receipt_lost_rate=0.0,
        receipt_duplicate_rate=0.0,
        receipt_reorder_rate=0.0,
        receipt_delay=0.0,
        receipt_delay_jitter=0.0,
    )
    fake.control.reset()
    return fake.control


def sendsms(fake, msg_id, receipt_url, *, password=TOKEN, **extra):
    params = {
        "username": "mailing",
        "password": password,
        "to": "79001234567",
        "text": "hello",
        "dlr-mask": "27",
        "dlr-url": f"{receipt_url}?id={msg_id}&sig=s&type=%d&reply=%A",
    } | extra
    return requests.get(fake.url.removesuffix("/v1") + "/cgi-bin/sendsms", params=params, timeout=5)


def test_sendsms_is_answered_as_kannel_answers(fake, control, receiver):
    url, _ = receiver
    accepted = sendsms(fake, 1, url)
    refused = sendsms(fake, 2, url, password="wrong")
    no_phone = sendsms(fake, 3, url, to="")
    assert (accepted.status_code, accepted.text) == (202, "0: Accepted for delivery")
    assert (refused.status_code, refused.text) == (403, "Authorization failed for sendsms")
    assert no_phone.status_code == 400
    assert [msg_id for msg_id, _ in control.accepted()] == [1]


def test_every_accepted_message_gets_the_smscs_acceptance_then_its_final_report(fake, control, receiver):
    url, reports = receiver
    started = time.time()
    for msg_id in range(1, 21):
        assert sendsms(fake, msg_id, url).status_code == 202
    wait_until(lambda: control.stats()["receipts"]["pending"] == 0, timeout=5, message="every report posted")
    by_message = defaultdict(list)
    for report in reports:
        by_message[report["id"]].append((report["type"], report["reply"], report["sig"]))
    assert all(
        seen == [("8", "ACK/", "s"), ("1", "stat:DELIVRD err:000", "s")] for seen in by_message.values()
    )
    receipts = control.stats()["receipts"]
    assert started <= receipts.pop("last_posted_at") <= time.time()
    assert receipts == {"planned": 40, "lost": 0, "posted": 40, "failed": 0, "pending": 0}


def test_reports_are_drawn_undelivered_lost_duplicated_and_out_of_order(fake, control, receiver):
    url, reports = receiver
    control.configure(
        receipt_undelivered_rate=0.3,
        receipt_lost_rate=0.2,
        receipt_duplicate_rate=0.2,
        receipt_reorder_rate=0.2,
        receipt_delay=0.2,
        receipt_delay_jitter=0.1,
    )
    sent = 300
    for msg_id in range(1, sent + 1):
        sendsms(fake, msg_id, url)
    wait_until(lambda: control.stats()["receipts"]["pending"] == 0, timeout=10, message="every report posted")
    finals = Counter(report["type"] for report in reports if report["type"] != "8")
    by_message = defaultdict(list)
    for report in reports:
        by_message[report["id"]].append(report["type"])
    lost = sent - len(by_message)
    duplicated = sum(1 for types in by_message.values() if len(types) == 3)
    reordered = sum(1 for types in by_message.values() if types[0] != "8")
    assert 30 <= lost <= 90  # 20 % of 300, give or take
    assert 0.2 <= finals["2"] / (finals["1"] + finals["2"]) <= 0.4
    assert 25 <= duplicated <= 75 and 25 <= reordered <= 75
    assert control.stats()["receipts"]["lost"] == lost
