"""The throughput benchmark: `make bench` (or `python -m bench --help`).

It starts what it measures as deployed (PostgreSQL and Redis must answer; the fake provider, a
Celery worker, beat and gunicorn are started here), in a database and Redis db of its own that it
removes at the end. Three phases, each can be skipped with a size of 0:

  send   N clients, one mailing to all of them, wait until every message is final; then the raw
         limit: a plain aiohttp client with as many requests in flight against the same provider.
  fanout a mailing to many clients with the provider down: how long the fan-out takes, and the
         worker's memory meanwhile.
  stats  p50/p95 of the statistics endpoints over many messages across many mailings.

With --window-zones N the clients of the send and fan-out phases live in N timezones and the
mailings carry a local window: half of the zones are inside it, the other half share one UTC
offset and their window opens --window-opens-in seconds after the mailing is created.
--without-window runs the same clients without the window, for comparison.
"""

import argparse
import itertools
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
import requests

from fake_provider.client import FakeProviderControl, free_port, start_fake_provider, stop_fake_provider
from fake_provider.rawload import measure as raw_measure
from mailings.window import LocalWindow, all_zones

from . import processes

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100_000, help="send phase size (0: skip)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency, seconds")
    parser.add_argument("--error-rate", type=float, default=0.0, help="provider 5xx share (send phase)")
    parser.add_argument("--garbage-rate", type=float, default=0.0, help="provider garbage share")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=None, help="SENDER_CONCURRENCY per dispatcher")
    parser.add_argument("--raw-seconds", type=float, default=10.0)
    parser.add_argument("--fanout-clients", type=int, default=1_000_000, help="fan-out phase size (0: skip)")
    parser.add_argument("--stats-messages", type=int, default=1_000_000, help="stats phase size (0: skip)")
    parser.add_argument("--stats-mailings", type=int, default=1_000)
    parser.add_argument("--stats-requests", type=int, default=200, help="requests per statistics endpoint")
    parser.add_argument(
        "--window-zones", type=int, default=0, help="clients in this many timezones, with a window"
    )
    parser.add_argument(
        "--window-opens-in", type=float, default=10.0, help="seconds until half the zones open"
    )
    parser.add_argument("--without-window", action="store_true", help="--window-zones clients, no window")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    return parser.parse_args()


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db_name = f"mailing_bench_{os.getpid()}"
        self.logdir = Path(tempfile.mkdtemp(prefix="mailing-bench-"))
        self.token = secrets.token_urlsafe(16)
        self.results: dict = {"latency_s": args.latency, "worker_processes": args.workers}
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "mailing_service.settings",
            "DATABASE_URL": f"{PG_ADMIN_URL}/{self.db_name}",
            "CELERY_BROKER_URL": REDIS_URL,
            "CACHE_URL": REDIS_URL,
            "PROVIDER_TOKEN": self.token,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
        }
        if args.concurrency:
            self.env["SENDER_CONCURRENCY"] = str(args.concurrency)
        self.opening_zones, self.inside_zones = window_zones(args.window_zones, datetime.now().astimezone())
        self.zones = [*self.opening_zones, *self.inside_zones] or ["Europe/Moscow"]
        self.window: LocalWindow | None = None
        if args.window_zones:
            self.results["zones"] = len(self.zones)
            self.results["local_window"] = not args.without_window

    # --- set-up -------------------------------------------------------------------------------

    def setup(self) -> None:
        self.provider_port, control_port = free_port(), free_port()
        self.env["PROVIDER_URL"] = f"http://127.0.0.1:{self.provider_port}/v1"
        os.environ.update(self.env)  # this process is a Django process of the same deployment
        self._admin_sql(f'CREATE DATABASE "{self.db_name}"')
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.provider = start_fake_provider(
            self.provider_port, control_port, self.token, latency=self.args.latency, seed=1
        )
        self.control = FakeProviderControl(f"http://127.0.0.1:{control_port}")
        self.worker = processes.start_worker(self.env, self.logdir, concurrency=self.args.workers)
        self.beat = processes.start_beat(self.env, self.logdir)
        self.web_port = free_port()
        self.web = processes.start_web(self.env, self.logdir, port=self.web_port)
        processes.wait_for_log(self.logdir, "worker", " ready.")
        processes.wait_for_log(self.logdir, "web", "Booting worker")
        self.api = f"http://127.0.0.1:{self.web_port}/api/v1"
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        user = get_user_model().objects.create_user("bench")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        self.results["sender_concurrency"] = settings.SENDER_CONCURRENCY
        self.results["dispatchers_per_mailing"] = settings.SENDER_DISPATCHERS_PER_MAILING

    def teardown(self) -> None:
        for name in ("worker", "beat", "web"):
            if hasattr(self, name):
                processes.stop(getattr(self, name))
        if hasattr(self, "provider"):
            stop_fake_provider(self.provider)
        from django.db import connections

        connections.close_all()
        self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        connection = redis.Redis.from_url(REDIS_URL)
        keys = [*connection.scan_iter("_kombu.*"), *connection.scan_iter("*sender:*")]
        connection.delete("celery", "unacked", "unacked_index", *keys)
        print(f"(logs of this run: {self.logdir})")

    def _admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as connection:
            connection.execute(sql)

    def _sql(self, sql: str, params=()) -> list[tuple]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql, list(params))  # always a list: "%%" then means "%"
            return cursor.fetchall() if cursor.description else []

    def _reset_tables(self) -> None:
        self._sql("TRUNCATE messages_app_message, mailings_mailing, clients_client RESTART IDENTITY CASCADE")
        self.control.reset()

    def _insert_clients(self, count: int) -> None:
        self._sql(
            "INSERT INTO clients_client (phone, operator_code, tag, timezone, created_at, updated_at) "
            "SELECT '79' || lpad(n::text, 9, '0'), '9' || lpad((n %% 100)::text, 2, '0'), "
            "'', (%s::text[])[1 + n %% %s], now(), now() FROM generate_series(1, %s) AS n",
            [self.zones, len(self.zones), count],
        )
        self._sql("ANALYZE clients_client")

    def _create_mailing(self, *, ends_in: float):
        from datetime import timedelta

        from django.utils import timezone

        from mailings.models import Mailing

        now = timezone.now()
        window = {}
        if self.opening_zones and not self.args.without_window:
            # Opens in the first zone group --window-opens-in seconds from now, for eight hours.
            opens = (now + timedelta(seconds=self.args.window_opens_in)).replace(microsecond=0)
            zone = ZoneInfo(self.opening_zones[0])
            window = {
                "local_window_start": opens.astimezone(zone).time(),
                "local_window_end": (opens + timedelta(hours=8)).astimezone(zone).time(),
            }
            self.window = LocalWindow(*window.values())
        # Saved inside its window: the post_save hook launches it, as an API call would.
        return Mailing.objects.create(
            start_at=now, end_at=now + timedelta(seconds=ends_in), text="Bench", **window
        )

    def _final_count(self, mailing_id: int) -> int:
        return self._sql(
            "SELECT count(*) FROM messages_app_message WHERE mailing_id = %s "
            "AND status IN ('sent', 'failed', 'expired')",
            [mailing_id],
        )[0][0]

    # --- phases -------------------------------------------------------------------------------

    def send_phase(self) -> None:
        n = self.args.clients
        self._reset_tables()
        self._insert_clients(n)
        self.control.configure(error_rate=self.args.error_rate, garbage_rate=self.args.garbage_rate)
        print(f"send: {n} clients, provider latency {self.args.latency * 1000:.0f} ms ...", flush=True)
        probe = ApiProbe(self.session, f"{self.api}/mailings/statistics/")
        with processes.RssSampler(self.worker) as rss, probe:
            created = time.time()
            mailing = self._create_mailing(ends_in=3600)
            while self._final_count(mailing.pk) < n:
                time.sleep(0.25)
        stats = self.control.stats(after=mailing.end_at.timestamp())
        window_check = self._window_check(mailing, created) if self.window else None
        (sent, lag_p50, lag_p99) = self._sql(
            "SELECT count(*) FILTER (WHERE status = 'sent'), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) "
            "FROM messages_app_message WHERE mailing_id = %s",
            [mailing.pk],
        )[0]
        wall = stats["last_accept_at"] - created
        in_flight = self.results["sender_concurrency"] * min(
            self.args.workers, self.results["dispatchers_per_mailing"]
        )
        self.control.configure(error_rate=0.0, garbage_rate=0.0)
        raw = raw_measure(self.env["PROVIDER_URL"], self.token, in_flight, self.args.raw_seconds)
        rate = n / wall
        self.results["send"] = {
            "clients": n,
            "sent": sent,
            "wall_s": round(wall, 2),
            "messages_per_s": round(rate, 1),
            "time_to_first_send_s": round(stats["first_accept_at"] - created, 3),
            "delivery_lag_p50_s": round(lag_p50, 3),
            "delivery_lag_p99_s": round(lag_p99, 3),
            "duplicates": stats["duplicates"],
            "sends_after_end": stats["accepted_after"],
            "worker_peak_rss_mb_per_process": round(rss.peak_process_mb, 1),
            "worker_peak_rss_mb_total": round(rss.peak_total_mb, 1),
            "raw_in_flight": in_flight,
            "raw_limit_per_s": raw["rate"],
            "ratio_to_raw": round(rate / raw["rate"], 3),
            "api_while_sending": probe.summary(),
        }
        if window_check:
            self.results["send"]["window"] = window_check

    def _window_check(self, mailing, created: float) -> dict:
        """Whether every acceptance lay inside its client's window, checked per zone group."""
        zone_of = dict(
            self._sql(
                "SELECT m.id, c.timezone FROM messages_app_message m "
                "JOIN clients_client c ON c.id = m.client_id WHERE m.mailing_id = %s",
                [mailing.pk],
            )
        )
        start = datetime.fromtimestamp(created).astimezone()
        occurrence = {zone: next(self.window.occurrences(zone, start)) for zone in set(zone_of.values())}
        outside, first_after_opening = 0, {}
        for msg_id, accepted_at in self.control.accepted():
            zone = zone_of[msg_id]
            opens, closes = occurrence[zone]
            outside += not opens.timestamp() <= accepted_at < closes.timestamp()
            first_after_opening[zone] = min(
                first_after_opening.get(zone, 1e18), accepted_at - opens.timestamp()
            )
        waited = [first_after_opening[zone] for zone in self.opening_zones if zone in first_after_opening]
        return {
            "accepted_outside_window": outside,
            "opening_zones_first_send_after_opening_s": round(max(waited), 3) if waited else None,
        }

    def fanout_phase(self) -> None:
        from mailings.models import Mailing
        from messages_app.models import WAITING_FOR_WINDOW

        n = self.args.fanout_clients
        self._reset_tables()
        self._insert_clients(n)
        # The provider answers 503 throughout, so the breaker keeps dispatchers quiet and the
        # fan-out is what the worker spends itself on.
        self.control.outage("503", 3600)
        print(f"fanout: {n} clients ...", flush=True)
        probe = ApiProbe(self.session, f"{self.api}/clients/")
        with processes.RssSampler(self.worker) as rss, probe:
            mailing = self._create_mailing(ends_in=3600)
            while not Mailing.objects.filter(pk=mailing.pk, fanout_completed_at__isnull=False).exists():
                time.sleep(0.25)
        self.control.outage("none", 0)
        mailing.refresh_from_db()
        created = self._sql("SELECT count(*) FROM messages_app_message WHERE mailing_id = %s", [mailing.pk])
        waiting = self._sql(
            "SELECT count(*) FROM messages_app_message WHERE mailing_id = %s AND last_error = %s",
            [mailing.pk, WAITING_FOR_WINDOW],
        )
        Mailing.objects.filter(pk=mailing.pk).delete()  # nothing of it may be sent later
        self.results["fanout"] = {
            "clients": n,
            "created_waiting_for_window": waiting[0][0],
            "messages_created": created[0][0],
            "seconds": round((mailing.fanout_completed_at - mailing.launched_at).total_seconds(), 2),
            "worker_peak_rss_mb_per_process": round(rss.peak_process_mb, 1),
            "worker_peak_rss_mb_total": round(rss.peak_total_mb, 1),
            "api_while_provider_down": probe.summary(),
        }

    def stats_phase(self) -> None:
        mailings, total = self.args.stats_mailings, self.args.stats_messages
        per_mailing = total // mailings
        self._reset_tables()
        self._insert_clients(per_mailing)
        print(f"stats: {per_mailing * mailings} messages across {mailings} mailings ...", flush=True)
        self._sql(
            "INSERT INTO mailings_mailing (start_at, end_at, text, filter_operator_code, filter_tag, "
            "created_at, updated_at, launched_at, fanout_cursor, fanout_completed_at) "
            "SELECT now() - interval '2 days' + n * interval '1 minute', now() - interval '1 day', "
            "'Past offer ' || n, '', '', now(), now(), now(), 0, now() FROM generate_series(1, %s) AS n",
            [mailings],
        )
        self._sql(
            "INSERT INTO messages_app_message (mailing_id, client_id, status, attempts, last_error, "
            "created_at, sent_at, next_attempt_at) "
            # Ended mailings hold final statuses only: 80 % sent, 10 % failed, 10 % expired.
            "SELECT m.id, c.id, (ARRAY['sent','sent','sent','sent','sent','sent','sent','sent',"
            "'failed','expired'])[1 + (c.id + m.id) %% 10], 1, '', now(), now(), now() "
            "FROM mailings_mailing m CROSS JOIN clients_client c"
        )
        # As autovacuum would soon after a bulk load: statistics, and the visibility map that
        # index-only scans rely on.
        self._sql("VACUUM ANALYZE")
        first_id = self._sql("SELECT min(id) FROM mailings_mailing")[0][0]
        pages = max(1, mailings // 50)
        requests_made = range(self.args.stats_requests)
        self.results["stats"] = {
            "messages": per_mailing * mailings,
            "mailings": mailings,
            "general": _latencies(
                self.session, [f"{self.api}/mailings/statistics/?page={1 + i % pages}" for i in requests_made]
            ),
            "per_mailing": _latencies(
                self.session,
                [f"{self.api}/mailings/{first_id + (i * 7) % mailings}/statistics/" for i in requests_made],
            ),
        }


class ApiProbe(processes.PeriodicSampler):
    """Calls the API every 100 ms while a phase runs: is it still responsive while the worker is busy?"""

    interval = 0.1

    def __init__(self, session: requests.Session, url: str):
        super().__init__()
        self._session, self._url = session, url
        self._took: list[float] = []

    def sample(self) -> None:
        started = time.perf_counter()
        self._session.get(self._url, timeout=30).raise_for_status()
        self._took.append((time.perf_counter() - started) * 1000)

    def summary(self) -> dict[str, float]:
        return _percentiles(self._took)


def _latencies(session: requests.Session, urls: list[str]) -> dict[str, float]:
    for url in urls[:5]:  # warm-up: connections, caches
        session.get(url, timeout=30).raise_for_status()
    took = []
    for url in urls:
        started = time.perf_counter()
        session.get(url, timeout=30).raise_for_status()
        took.append((time.perf_counter() - started) * 1000)
    return _percentiles(took)


def _percentiles(took_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(took_ms, n=100)
    return {"p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1), "requests": len(took_ms)}


def window_zones(count: int, now: datetime) -> tuple[list[str], list[str]]:
    """`count` timezones for a window run: half share one UTC offset (the window opens there soon),
    the others are one to seven hours ahead of it (inside an eight-hour window already)."""
    if not count:
        return [], []
    by_offset = defaultdict(list)
    for zone in all_zones():
        if "/" in zone and not zone.startswith(("Etc/", "SystemV/")):
            by_offset[now.astimezone(ZoneInfo(zone)).utcoffset()].append(zone)
    base = max(by_offset, key=lambda offset: len(by_offset[offset]))
    opening = by_offset[base][: count // 2]
    ahead = [by_offset.get(base + timedelta(hours=hours), []) for hours in range(1, 8)]
    spread = [zone for group in itertools.zip_longest(*ahead) for zone in group if zone]
    return opening, spread[: count - len(opening)]


def main() -> int:
    args = parse_args()
    # A stopped benchmark still removes its processes, database and Redis keys (teardown below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(args)
    try:
        bench.setup()
        if args.clients:
            bench.send_phase()
        if args.fanout_clients:
            bench.fanout_phase()
        if args.stats_messages:
            bench.stats_phase()
    finally:
        bench.teardown()
    report = json.dumps(bench.results, indent=2)
    print(report)
    if args.json:
        args.json.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
