"""End to end through a real Kannel: Debian's bearerbox, smsbox and its test SMSC fakesmsc, the web
(gunicorn) taking Kannel's delivery reports, and a Celery worker with beat sending through Kannel's
sendsms and writing the receipts. Needs the `kannel` and `kannel-extras` packages (`.ci/run`
installs them); without them that test skips, except under CI, where it fails. The fake provider's
Kannel API then drives receipts that are late, lost, repeated and out of order.
"""

import os
import secrets
import sys
from pathlib import Path

import pytest
import requests

from clients.models import Client
from fake_provider.client import free_port
from harness.processes import Process
from harness.waiting import wait_until
from messages_app.models import Message
from messages_app.selectors import message_counts_by_mailing

from .e2e import FAKE_PROVIDER_SEED, TOKEN, FakeProviderProcess, Worker, counts_by_status, database_url
from .test_pipeline_e2e import create_mailing

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

BEARERBOX, SMSBOX = Path("/usr/sbin/bearerbox"), Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
CONFIG_TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "kannel" / "fakesmsc.conf"
MESSAGES = 200
PROVIDER = "default"  # the provider of PROVIDER_KIND when no provider row exists


def require_kannel() -> None:
    missing = [str(path) for path in (BEARERBOX, SMSBOX, FAKESMSC) if not path.exists()]
    if missing:
        problem = f"Kannel is not installed (apt-get install kannel kannel-extras): {', '.join(missing)}"
        (pytest.fail if os.environ.get("CI") else pytest.skip)(problem)


class Kannel:
    """bearerbox, fakesmsc and smsbox on free ports, in a folder of their own."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.sendsms_port, self.fakesmsc_port = free_port(), free_port()
        self.smsbox_port, self.admin_port = free_port(), free_port()
        self.username, self.password = "mailing", secrets.token_hex(8)
        (folder / "spool").mkdir()
        self.config = folder / "kannel.conf"
        self.config.write_text(
            CONFIG_TEMPLATE.read_text().format(
                admin_port=self.admin_port,
                admin_password=secrets.token_hex(8),
                smsbox_port=self.smsbox_port,
                fakesmsc_port=self.fakesmsc_port,
                sendsms_port=self.sendsms_port,
                folder=folder,
                username=self.username,
                password=self.password,
            )
        )
        self.bearerbox = Process(
            [str(BEARERBOX), str(self.config)], log=folder / "bearerbox.out", stop_grace=5
        )
        # fakesmsc reads messages to send from its stdin until it closes: kept open by `sleep`.
        fakesmsc = f"sleep infinity | {FAKESMSC} -H 127.0.0.1 -r {self.fakesmsc_port} -m -1"
        self.fakesmsc = Process(["sh", "-c", fakesmsc], log=folder / "fakesmsc.out", stop_grace=5)
        self.smsbox = Process([str(SMSBOX), str(self.config)], log=folder / "smsbox.out", stop_grace=5)

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def __enter__(self) -> "Kannel":
        self.bearerbox.start()
        self.bearerbox.wait_for_port(self.fakesmsc_port, timeout=20)
        self.fakesmsc.start()
        self.smsbox.start()
        self.smsbox.wait_for_port(self.sendsms_port, timeout=20)
        return self

    def __exit__(self, *exc_info) -> None:
        for process in (self.smsbox, self.fakesmsc, self.bearerbox):
            process.stop()

    def messages_reached_the_smsc(self) -> int:
        return (self.folder / "fakesmsc.out").read_text().count("Got message ")


class ReceivingWeb(Process):
    """The web (gunicorn) taking the receipts into the tests' Redis, and the settings the worker
    needs to send with receipts to it."""

    def __init__(self, redis_url: str, workdir: Path):
        self.port = free_port()
        self.receipts = {
            "RECEIPT_SECRETS": f"{PROVIDER}={secrets.token_hex(16)}",
            "RECEIPT_QUEUE_URL": redis_url,
            "RECEIPT_BASE_URL": f"http://127.0.0.1:{self.port}",
        }
        env = os.environ | self.receipts | {"DATABASE_URL": database_url(), "CACHE_URL": redis_url}
        command = [sys.executable, "-m", "gunicorn", "mailing_service.wsgi", "--workers", "2"]
        super().__init__([*command, "--bind", f"127.0.0.1:{self.port}"], env=env, log=workdir / "web.log")

    def start(self) -> "ReceivingWeb":
        super().start()
        self.wait_for_url(f"http://127.0.0.1:{self.port}/health/live", timeout=30)
        return self

    def worker(self, redis_url: str, workdir: Path, **kannel: str) -> Worker:
        return Worker(
            broker_url=redis_url,
            cache_url=redis_url,
            provider=None,
            workdir=workdir,
            PROVIDER_KIND="kannel",
            **kannel,
            **self.receipts,
        )


def make_clients(number: int) -> None:
    Client.objects.bulk_create(
        Client(phone=f"79{n:09d}", operator_code="900", timezone="UTC") for n in range(number)
    )


def test_a_mailing_through_kannel_gets_every_delivery_report_recorded(services_up, tmp_path, api_client):
    require_kannel()
    make_clients(MESSAGES)
    with Kannel(tmp_path) as kannel, ReceivingWeb(services_up, tmp_path) as web:
        worker = web.worker(
            services_up,
            tmp_path,
            KANNEL_URL=kannel.sendsms_url,
            KANNEL_USERNAME=kannel.username,
            KANNEL_PASSWORD=kannel.password,
            KANNEL_FROM="Shop",
        )
        with worker:
            mailing_id = create_mailing(api_client)
            wait_until(
                lambda: counts_by_status(mailing_id).get("delivered") == MESSAGES,
                timeout=90,
                interval=0.5,
                message="every message delivered",
            )
        assert counts_by_status(mailing_id) == {"delivered": MESSAGES}
        assert kannel.messages_reached_the_smsc() == MESSAGES
        # A report for a message Kannel never had (a forged id with a good signature is impossible
        # without the secret; one with a bad signature is refused).
        forged = requests.get(
            f"http://127.0.0.1:{web.port}/receipts/{PROVIDER}/",
            params={"id": "1", "sig": "0" * 32, "type": "1"},
            timeout=5,
        )
        assert forged.status_code == 403
    messages = Message.objects.filter(mailing_id=mailing_id)
    assert set(messages.values_list("provider", flat=True)) == {PROVIDER}
    assert not messages.filter(delivered_at__isnull=True).exists()
    assert all(delivered >= sent for sent, delivered in messages.values_list("sent_at", "delivered_at"))
    worker_log = (tmp_path / "worker.log").read_text()
    assert kannel.password not in worker_log and kannel.password not in (tmp_path / "web.log").read_text()


def test_receipts_late_lost_repeated_and_out_of_order_from_the_fake_kannel(services_up, tmp_path, api_client):
    """The fake provider's Kannel API draws a third undelivered, and loses and repeats receipts, late
    by up to 0.9 s: every message ends as its drawn final report says, the repeats change nothing,
    and the tallies agree with the messages."""
    sent = 600
    make_clients(sent)
    fake = FakeProviderProcess(
        TOKEN,
        seed=FAKE_PROVIDER_SEED,
        receipt_undelivered_rate=0.3,
        receipt_lost_rate=0.1,
        receipt_duplicate_rate=0.2,
        receipt_delay=0.5,
        receipt_delay_jitter=0.4,
    )
    with fake, ReceivingWeb(services_up, tmp_path) as web:
        sendsms = fake.url.removesuffix("/v1") + "/cgi-bin/sendsms"
        with web.worker(
            services_up, tmp_path, KANNEL_URL=sendsms, KANNEL_USERNAME="us", KANNEL_PASSWORD=TOKEN
        ):
            mailing_id = create_mailing(api_client)
            wait_until(
                lambda: (
                    fake.control.stats()["unique_accepted"] == sent
                    and fake.control.stats()["receipts"]["pending"] == 0
                ),
                timeout=90,
                interval=0.5,
                message="every message accepted and its receipts posted",
            )
            lost = fake.control.stats()["receipts"]["lost"]
            wait_until(
                lambda: counts_by_status(mailing_id).get("sent", 0) == lost,
                timeout=30,
                interval=0.5,
                message="every posted receipt written",
            )
    counts = counts_by_status(mailing_id)
    assert counts["delivered"] + counts["undelivered"] == sent - lost
    assert 0.2 < counts["undelivered"] / (sent - lost) < 0.4
    tallied = message_counts_by_mailing([mailing_id])[mailing_id]
    assert {status: tallied[status] for status in counts} == counts
