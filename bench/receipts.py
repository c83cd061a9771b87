"""The receipts phase: the send phase's mailing through a Kannel transport against the fake provider's
sendsms, which requests each message's dlr-url on the receipt server (`manage.py serve_receipts`, one
process: the final report, as dlr-mask asks, RECEIPT_DELAY +/- RECEIPT_JITTER seconds after
acceptance) while the send goes on; beat's write_receipts writes them from the bench's Redis in batches.
Measured: the send's rate against the raw client (which speaks the probe API: same fake, same
latency), the time from the last report posted until every message is delivered or undelivered,
reports posted against receipts recorded, and the receipts one process takes, from a plain aiohttp
client: a receipt server, and a web (gunicorn of one sync worker)."""

import secrets
import sys
import time

import requests

from fake_provider.client import free_port
from fake_provider.receipts import CONNECTIONS
from fake_provider.sends import KANNEL_PATH

from . import measure, processes
from .context import Bench

RECEIPT_DELAY = 1.0  # seconds from acceptance to the final report
RECEIPT_JITTER = 0.5
UNDELIVERED_SHARE = 0.02
RECORDING_STALL = 120.0  # seconds without one more receipt recorded before the phase stops waiting
ONE_PROCESS_RECEIPTS = 20_000  # the one-process measure's bounds
ONE_PROCESS_SECONDS = 20.0
RAW_CLIENT = "raw aiohttp on the probe API (same fake, same latency)"


def receipts_phase(bench: Bench) -> None:
    from messages_app.receipts import QUEUE_KEY
    from providers.models import SETTINGS_PROVIDER

    n = bench.args.receipts_clients
    secret = secrets.token_urlsafe(16)
    server_port = free_port()
    receipt_env = {
        "RECEIPT_SECRETS": f"{SETTINGS_PROVIDER}={secret}",
        "RECEIPT_BASE_URL": f"http://127.0.0.1:{server_port}",
    }
    kannel_env = {
        "PROVIDER_KIND": "kannel",
        "KANNEL_URL": bench.provider.url.removesuffix("/v1") + KANNEL_PATH,
        "KANNEL_USERNAME": "bench",  # the fake takes any user with its token as the password
        "KANNEL_PASSWORD": bench.token,
    }
    server = processes.receipt_server(bench.env | receipt_env, bench.logdir, port=server_port).start()
    bench.start_workers(**receipt_env, **kannel_env)
    bench.control.configure(
        receipt_delay=RECEIPT_DELAY,
        receipt_delay_jitter=RECEIPT_JITTER,
        receipt_undelivered_rate=UNDELIVERED_SHARE,
    )

    cpu = CpuShares(
        {
            "workers (senders, and write_receipts)": bench.workers,
            "fake provider (sends and posts reports)": [bench.provider.process],
            "receipt server": [server],
            "beat": [bench.beat],
        }
    )

    def send() -> tuple[dict, dict]:
        print(
            f"receipts: {n} clients through Kannel's sendsms at {bench.args.latency * 1000:.0f} ms, "
            f"reports after {RECEIPT_DELAY} s ...",
            flush=True,
        )
        with cpu:
            run = measure.send(bench, n)
            recorded = _until_recorded(bench, run["mailing"].pk, n)
        return run, recorded

    try:
        server.wait_for_log("receipt server on")
        (run, recorded), raw = measure.between_raw_runs(bench, measure.raw_in_flight(bench), send)
        _report_send(bench, n, run, raw, recorded)
        bench.results["receipts"]["cpu_seconds"] = cpu.seconds
        bench.row(
            "receipts",
            "CPU seconds from the mailing's creation to the last receipt recorded, by process",
            "; ".join(f"{name} {seconds:,.1f}" for name, seconds in cpu.seconds.items()),
        )
        bench.stop_workers()  # the machine to the one process measured alone; its receipts stay queued
        load = ReceiptLoad(bench, secret, SETTINGS_PROVIDER, run["mailing"].pk)
        bench.results["receipts"]["one_process"] = one_process = {
            "receipt_server": load.on(f"http://127.0.0.1:{server_port}"),
            "web": load.on_one_web_process(receipt_env),
        }
        _report_one_process(bench, one_process)
    finally:
        bench.control.configure(receipt_delay=0.0, receipt_delay_jitter=0.0, receipt_undelivered_rate=0.0)
        bench.stop_workers()
        server.stop()
        bench.redis.delete(QUEUE_KEY)


def _until_recorded(bench: Bench, mailing_id: int, n: int) -> dict:
    """Polls the tallies until every message is delivered or undelivered (or recording stalls)."""
    from messages_app.selectors import message_counts_by_mailing

    recorded, progressed_at = 0, time.time()
    while True:
        counts = message_counts_by_mailing([mailing_id])[mailing_id]
        now = time.time()
        if counts["delivered"] + counts["undelivered"] > recorded:
            recorded, progressed_at = counts["delivered"] + counts["undelivered"], now
        if recorded >= n or now - progressed_at > RECORDING_STALL:
            break
        time.sleep(0.25)
    return {
        "recorded_at": progressed_at,
        "delivered": counts["delivered"],
        "undelivered": counts["undelivered"],
        "still_sent": counts["sent"],
        "reports": bench.control.stats()["receipts"],
    }


class CpuShares:
    """CPU seconds each group of processes used while the `with` block ran, and the rest of the
    machine's (PostgreSQL, Redis, the bench itself) as "other"."""

    def __init__(self, groups: dict[str, list]):
        self.groups = groups
        self.seconds: dict[str, float] = {}

    def __enter__(self) -> "CpuShares":
        self._before = {name: processes.cpu_seconds(*group) for name, group in self.groups.items()}
        self._machine_before = processes.machine_cpu_seconds()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = {
            name: round(processes.cpu_seconds(*group) - self._before[name], 1)
            for name, group in self.groups.items()
        }
        machine = processes.machine_cpu_seconds() - self._machine_before
        self.seconds["other"] = round(machine - sum(self.seconds.values()), 1)


class ReceiptLoad:
    """Final reports for the mailing's messages from a plain aiohttp client with as many in flight as
    the fake posts with (`bench.receipt_load`): the receipts one process takes."""

    def __init__(self, bench: Bench, secret: str, provider: str, mailing_id: int):
        self.bench, self.secret, self.provider = bench, secret, provider
        (self.first_id, self.count) = bench.sql(
            "SELECT min(id), count(*) FROM messages_app_message WHERE mailing_id = %s", [mailing_id]
        )[0]

    def on_one_web_process(self, receipt_env: dict) -> dict:
        port = free_port()
        env = self.bench.env | receipt_env
        web = processes.web(env, self.bench.logdir, port=port, workers=1, log_name="web-one").start()
        try:
            web.wait_for_log("Booting worker")
            return self.on(f"http://127.0.0.1:{port}")
        finally:
            web.stop()

    def on(self, base_url: str) -> dict:
        requests.get(f"{base_url}/receipts/{self.provider}/", timeout=30)  # waits for it to load: a 400
        last_id = self.first_id + min(self.count, ONE_PROCESS_RECEIPTS) - 1
        command = [sys.executable, "-m", "bench.receipt_load", "--base-url", base_url]
        command += ["--provider", self.provider, "--first-id", str(self.first_id), "--last-id", str(last_id)]
        command += ["--concurrency", str(CONNECTIONS), "--seconds", str(ONE_PROCESS_SECONDS)]
        env = self.bench.env | {"BENCH_RECEIPT_SECRET": self.secret}
        return processes.run_json(command, env, timeout=ONE_PROCESS_SECONDS + 60)


def _report_send(bench: Bench, n: int, run: dict, raw: dict, recorded: dict) -> None:
    reports = recorded["reports"]
    ratio = round(run["messages_per_s"] / raw["raw_limit_per_s"], 3)
    last_accept_at = run["created"] + run["wall_s"]
    after_last_post = round(recorded["recorded_at"] - reports["last_posted_at"], 2)
    after_last_accept = round(recorded["recorded_at"] - last_accept_at, 2)
    # The receipt server's load while sending: every report request, first acceptance to last post.
    posting_s = reports["last_posted_at"] - (run["created"] + run["time_to_first_send_s"])
    posted_per_s = round(reports["posted"] / posting_s, 1)
    results = measure.public(run) | {
        **raw,
        "ratio_to_raw": ratio,
        "receipt_delay_s": RECEIPT_DELAY,
        "receipt_delay_jitter_s": RECEIPT_JITTER,
        "undelivered_share": UNDELIVERED_SHARE,
        "reports": reports,
        "delivered": recorded["delivered"],
        "undelivered": recorded["undelivered"],
        "still_sent": recorded["still_sent"],
        "recorded_after_last_post_s": after_last_post,
        "recorded_after_last_accept_s": after_last_accept,
        "receipt_server_requests_per_s_while_sending": posted_per_s,
    }
    bench.results["receipts"] = results
    label = f"{n:,} clients through Kannel's sendsms at {bench.args.latency * 1000:.0f} ms"
    bench.row("receipts", label, f"{run['wall_s']} s, {run['messages_per_s']:,} msg/s")
    measure.raw_row(bench, "receipts", raw, ratio, client=RAW_CLIENT)
    bench.row(
        "receipts",
        f"every message delivered/undelivered after the last report posted / the last acceptance "
        f"(reports {RECEIPT_DELAY:g} s +/- {RECEIPT_JITTER:g} s after it)",
        f"{after_last_post} s / {after_last_accept} s",
    )
    bench.row(
        "receipts",
        "final reports posted / failed / lost; delivered / undelivered; still sent",
        f"{reports['posted']:,} / {reports['failed']} / {reports['lost']}; "
        f"{recorded['delivered']:,} / {recorded['undelivered']:,}; {recorded['still_sent']}",
    )
    bench.row(
        "receipts", "receipt server (one process) while sending: report requests/s", f"{posted_per_s:,}"
    )


def _report_one_process(bench: Bench, one_process: dict) -> None:
    for name, label in (
        ("receipt_server", "one receipt server process"),
        ("web", "one web process (gunicorn, 1 sync worker)"),
    ):
        taken = one_process[name]
        bench.row(
            "receipts",
            f"{label}: final reports, {CONNECTIONS} in flight",
            f"{taken['rate']:,} receipts/s ({taken['requests']:,} in {taken['seconds']} s, "
            f"{taken['errors']} errors)",
        )
