"""The throughput benchmark: `make bench` (or `python -m bench --help`).

It starts what it measures as deployed (PostgreSQL and Redis must answer; the fake provider, Celery
worker nodes, beat and gunicorn are started here), in a database and Redis db of its own that it
removes at the end. Phases run in this order; `--skip NAME` leaves one out (or give it size 0):

  send       N clients at 50 ms until every message is final; the raw limit: a plain aiohttp client
             (a process of its own) with as many requests in flight against the same provider,
             before the send and after it (the headline ratio, to their mean).
  latency    a sweep of provider latencies (50 ms, 500 ms, 2 s, 5 s, each spread ±50 %), default
             settings: what the pace reaches and how fast, against the ideal (the senders'
             SENDER_CONCURRENCY over the latency, or the raw client where the CPU binds first);
             then the fairness run at 5 s: a big mailing alone, then with ten small ones beside it.
  soak       a long send at 50 ms: throughput of the first and last tenth, memory, Celery queue.
  baseline   the design card's shape: one Celery task per message with requests (same worker),
             then a requests thread pool and the aiohttp client against the same provider.
  ratelimit  a provider allowing R sends/s (429 above), 2 worker nodes, 4 senders: with
             PROVIDER_RATE_LIMIT=R and without it (learned from 429s).
  scaleout   one mailing on one worker node, then on two nodes (``-n a@%h``, ``-n b@%h``), at 500 ms.
  size       fan-out of N clients (provider down), worker memory, statistics p95 with the N
             messages in the database, database size per message.
  stats      p50/p95 of the statistics endpoints over many messages across many mailings.

With --window-zones N the send phase's clients live in N timezones and its mailing carries a local
window: half of the zones are inside it, the other half share one UTC offset and their window opens
--window-opens-in seconds after the mailing is created; every acceptance is checked against its
client's window. --without-window runs the same clients without the window, for comparison.
"""

import argparse
import contextlib
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

from fake_provider.client import FakeProviderControl, FakeProviderProcess, free_port
from mailings.window import LocalWindow, all_zones

from . import processes
from .sweep import Timeline, sweep_svg

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
PHASES = ("send", "latency", "soak", "baseline", "ratelimit", "scaleout", "size", "stats")
RATE_LIMIT_CHECK_WINDOW = 10.0  # seconds over which the rate limit must hold
QUEUE = "celery"
# A real provider's latency varies from request to request: the latency phase's is uniform within
# this share of its mean either side.
LATENCY_SPREAD = 0.5
# The fairness run: a big mailing, then these many small ones of this size created a round trip later.
FAIR_LATENCY = 5.0
FAIR_SMALL_MAILINGS, FAIR_SMALL_CLIENTS = 10, 20


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip", action="append", choices=PHASES, default=[], help="leave a phase out")
    parser.add_argument(
        "--window-zones", type=int, default=0, help="send phase: clients in N zones, a window"
    )
    parser.add_argument(
        "--window-opens-in", type=float, default=10.0, help="seconds until half the zones open"
    )
    parser.add_argument("--without-window", action="store_true", help="--window-zones clients, no window")
    parser.add_argument("--clients", type=int, default=100_000, help="send phase size")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency, seconds")
    parser.add_argument("--error-rate", type=float, default=0.0, help="provider 5xx share (send phase)")
    parser.add_argument("--garbage-rate", type=float, default=0.0, help="provider garbage share")
    parser.add_argument("--workers", type=int, default=2, help="processes of a Celery worker node")
    parser.add_argument("--concurrency", type=int, default=None, help="SENDER_CONCURRENCY per sender")
    parser.add_argument("--raw-seconds", type=float, default=10.0)
    parser.add_argument("--slow-latency", type=float, default=0.5, help="scaleout phase's latency")
    parser.add_argument(
        "--sweep-latencies",
        type=lambda text: [float(value) for value in text.split(",")],
        default=[0.05, 0.5, 2.0, 5.0],
        help="latency phase: provider mean latencies, seconds, comma-separated",
    )
    parser.add_argument(
        "--sweep-seconds", type=float, default=40.0, help="latency phase: clients for this long at the ideal"
    )
    parser.add_argument(
        "--fair-clients",
        type=int,
        default=3_000,
        help="latency phase: the fairness run's big mailing (0: none)",
    )
    parser.add_argument("--svg", type=Path, help="latency phase: draw the sweep into this file")
    parser.add_argument("--soak-messages", type=int, default=1_000_000, help="soak phase size")
    parser.add_argument("--baseline-messages", type=int, default=1_000, help="per-message Celery tasks")
    parser.add_argument("--baseline-threads", type=int, default=200, help="requests thread pool size")
    parser.add_argument("--rate-limit", type=float, default=300.0, help="provider allowance, sends/s")
    parser.add_argument("--rate-seconds", type=float, default=40.0, help="length of each rate-limit run")
    parser.add_argument("--scaleout-clients", type=int, default=16_000, help="scale-out phase size")
    parser.add_argument(
        "--scaleout-ceiling",
        type=int,
        default=200,
        help="SENDER_CONCURRENCY_MAX per sender in the scale-out phase: what one node can do",
    )
    parser.add_argument("--fanout-clients", type=int, default=10_000_000, help="size phase clients")
    parser.add_argument("--stats-messages", type=int, default=1_000_000, help="stats phase size")
    parser.add_argument("--stats-mailings", type=int, default=1_000)
    parser.add_argument("--stats-requests", type=int, default=200, help="requests per statistics endpoint")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    sizes = {
        "send": args.clients,
        "latency": args.sweep_seconds,
        "soak": args.soak_messages,
        "baseline": args.baseline_messages,
        "ratelimit": args.rate_limit,
        "scaleout": args.scaleout_clients,
        "size": args.fanout_clients,
        "stats": args.stats_messages,
    }
    args.phases = [phase for phase in PHASES if phase not in args.skip and sizes[phase]]
    return args


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.db_name = f"mailing_bench_{os.getpid()}"
        self.logdir = Path(tempfile.mkdtemp(prefix="mailing-bench-"))
        self.token = secrets.token_urlsafe(16)
        self.results: dict = {"latency_s": args.latency, "worker_processes": args.workers}
        self.rows: list[tuple[str, str, str]] = []  # the table: phase, measure, value
        self.env = os.environ | {
            "DJANGO_SETTINGS_MODULE": "mailing_service.settings",
            "DATABASE_URL": f"{PG_ADMIN_URL}/{self.db_name}",
            "CELERY_BROKER_URL": REDIS_URL,
            "CACHE_URL": REDIS_URL,
            "PROVIDER_TOKEN": self.token,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(32),
            # The bench measures latency, not the rate limits: one user sends its requests unlimited.
            "API_THROTTLE_USER": "",
            "API_THROTTLE_USER_WRITE": "",
            "API_THROTTLE_IP": "",
        }
        self.env.pop("PROVIDER_RATE_LIMIT", None)
        if args.concurrency:
            self.env["SENDER_CONCURRENCY"] = str(args.concurrency)
        self.workers: list = []
        self._worker_runs = 0
        self.opening_zones, inside_zones = window_zones(args.window_zones, datetime.now().astimezone())
        self.zones = [*self.opening_zones, *inside_zones] or ["Europe/Moscow"]
        self.window: LocalWindow | None = None

    def row(self, phase: str, measure: str, value) -> None:
        self.rows.append((phase, measure, str(value)))

    # --- set-up -------------------------------------------------------------------------------

    def setup(self) -> None:
        self.provider = FakeProviderProcess(self.token, latency=self.args.latency, seed=1)
        self.control = self.provider.control
        self.env["PROVIDER_URL"] = self.provider.url
        os.environ.update(self.env)  # this process is a Django process of the same deployment
        self._admin_sql(f'CREATE DATABASE "{self.db_name}"')
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        self.provider.start()
        self.beat = processes.beat(self.env, self.logdir).start()
        self.web_port = free_port()
        self.web = processes.web(self.env, self.logdir, port=self.web_port).start()
        self.web.wait_for_log("Booting worker")
        self.api = f"http://127.0.0.1:{self.web_port}/api/v1"
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from rest_framework.authtoken.models import Token

        from accounts.roles import OPERATORS

        user = get_user_model().objects.create_user("bench")
        user.groups.add(Group.objects.get(name=OPERATORS))
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
        self.results["sender_concurrency"] = settings.SENDER_CONCURRENCY
        self.results["sender_concurrency_max"] = settings.SENDER_CONCURRENCY_MAX
        self.results["senders_per_mailing"] = settings.SENDERS_PER_MAILING
        self.redis = redis.Redis.from_url(REDIS_URL)

    def start_workers(
        self, *, nodes: int = 1, concurrency: int | None = None, include: str | None = None, **overrides: str
    ) -> None:
        """(Re)start the worker: `nodes` separate Celery nodes, as on as many machines."""
        self.stop_workers()
        env = self.env | overrides
        self._worker_runs += 1
        for index in range(nodes):
            name = f"worker-{self._worker_runs}-{'abcdefgh'[index]}"
            worker = processes.worker(
                env,
                self.logdir,
                concurrency=concurrency or self.args.workers,
                log_name=name,
                node=f"{'abcdefgh'[index]}@%h" if nodes > 1 else None,
                include=include,
            )
            self.workers.append(worker.start())
            worker.wait_for_log(" ready.")

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []
        # Dispatch tasks a stopped worker left behind would start on the next one: drop them.
        self.redis.delete(QUEUE, "unacked", "unacked_index", *self.redis.scan_iter("*sender:*"))

    def teardown(self) -> None:
        if hasattr(self, "redis"):
            self.stop_workers()
        for name in ("beat", "web", "provider"):
            if hasattr(self, name):
                getattr(self, name).stop()
        from django.db import connections

        connections.close_all()
        self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        connection = redis.Redis.from_url(REDIS_URL)
        keys = [*connection.scan_iter("_kombu.*"), *connection.scan_iter("*sender:*")]
        connection.delete(QUEUE, "unacked", "unacked_index", *keys)
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
        # The message tallies go with the messages (their TRUNCATE trigger).
        self._sql("TRUNCATE messages_app_message, mailings_mailing, clients_client RESTART IDENTITY CASCADE")
        self.control.reset()

    def _insert_clients(self, count: int, *, tag: str = "", first: int = 1) -> None:
        self._sql(
            "INSERT INTO clients_client (phone, operator_code, tag, timezone, created_at, updated_at) "
            "SELECT '79' || lpad(n::text, 9, '0'), '9' || lpad((n %% 100)::text, 2, '0'), "
            "%s, (%s::text[])[1 + n %% %s], now(), now() FROM generate_series(%s, %s) AS n",
            [tag, self.zones, len(self.zones), first, first + count - 1],
        )
        self._sql("ANALYZE clients_client")

    def _create_mailing(self, *, ends_in: float, starts_in: float = 0.0, filter_tag: str = ""):
        from django.utils import timezone

        from mailings.models import Mailing

        start = timezone.now() + timedelta(seconds=starts_in)
        window = {}
        if self.opening_zones and not self.args.without_window:
            # Opens in the first zone group --window-opens-in seconds from now, for eight hours.
            opens = (start + timedelta(seconds=self.args.window_opens_in)).replace(microsecond=0)
            zone = ZoneInfo(self.opening_zones[0])
            window = {
                "local_window_start": opens.astimezone(zone).time(),
                "local_window_end": (opens + timedelta(hours=8)).astimezone(zone).time(),
            }
            self.window = LocalWindow(*window.values())
        # Saved inside its window: the post_save hook launches it, as an API call would.
        return Mailing.objects.create(
            start_at=start,
            end_at=start + timedelta(seconds=ends_in),
            text="Bench",
            filter_tag=filter_tag,
            **window,
        )

    def _final_count(self, mailing_id: int) -> int:
        """From the message tallies: a COUNT(*) over the mailing's messages four times a second would
        take PostgreSQL CPU from the senders being measured."""
        from messages_app.selectors import message_counts_by_mailing

        counts = message_counts_by_mailing([mailing_id])[mailing_id]
        return counts["sent"] + counts["failed"] + counts["expired"]

    def _raw_client(self, concurrency: int, *, client: str = "aiohttp", first_id: int | None = None) -> dict:
        """The plain client of `fake_provider.rawload`, in a process of its own as a client without
        this service would run: in this one, its garbage collections walked Django's objects too."""
        command = [sys.executable, "-m", "fake_provider.rawload", "--url", self.env["PROVIDER_URL"]]
        command += ["--client", client, "--concurrency", str(concurrency)]
        command += ["--seconds", str(self.args.raw_seconds)]
        if first_id is not None:
            command += ["--first-id", str(first_id)]
        result = processes.run_json(command, self.env, timeout=self.args.raw_seconds + 60)
        if result["errors"]:  # its rate counts every answer: refusals would pass for speed
            raise RuntimeError(f"the raw client got {result['errors']} errors: {result}")
        return result

    def _breaker_trips(self) -> int:
        return sum(path.read_text().count("provider paused") for path in self.logdir.glob("worker-*.log"))

    def _send(self, n: int, *, samplers=(), ends_in: float = 3600) -> dict:
        """A mailing to `n` fresh clients, until every message is final: what the provider saw."""
        self._reset_tables()
        self._insert_clients(n)
        breaker_before = self._breaker_trips()
        with contextlib.ExitStack() as running:
            rss = running.enter_context(processes.RssSampler(*self.workers))
            for sampler in samplers:
                running.enter_context(sampler)
            created = time.time()
            mailing = self._create_mailing(ends_in=ends_in)
            while self._final_count(mailing.pk) < n:
                time.sleep(0.25)
        stats = self.control.stats(after=mailing.end_at.timestamp())
        wall = stats["last_accept_at"] - created
        return {
            "mailing": mailing,
            "created": created,
            "clients": n,
            "wall_s": round(wall, 2),
            "messages_per_s": round(n / wall, 1),
            "time_to_first_send_s": round(stats["first_accept_at"] - created, 3),
            "duplicates": stats["duplicates"],
            "sends_after_end": stats["accepted_after"],
            "requests": stats["requests_total"],
            "throttled": stats["outcomes"]["throttled"],
            "breaker_trips": self._breaker_trips() - breaker_before,
            "worker_peak_rss_mb_per_process": round(rss.peak_process_mb, 1),
            "worker_peak_rss_mb_total": round(rss.peak_total_mb, 1),
            "rss_samples_mb": rss.totals_mb,
        }

    # --- phases -------------------------------------------------------------------------------

    def send_phase(self) -> None:
        n = self.args.clients
        in_flight = self.results["sender_concurrency"] * min(
            self.args.workers, self.results["senders_per_mailing"]
        )
        self.start_workers()
        # The raw client runs before the send and after it, with the workers idle both times, and the
        # ratio takes their mean: a machine's speed drifts from one minute to the next, and a single
        # measure after the send would judge the send by that drift.
        self.control.configure(latency=self.args.latency, error_rate=0.0, garbage_rate=0.0)
        raw_before = self._raw_client(in_flight)
        self.control.configure(error_rate=self.args.error_rate, garbage_rate=self.args.garbage_rate)
        print(f"send: {n} clients, provider latency {self.args.latency * 1000:.0f} ms ...", flush=True)
        api_latency = ApiLatencySampler(self.session, f"{self.api}/mailings/statistics/")
        run = self._send(n, samplers=[api_latency])
        window_check = self._window_check(run["mailing"], run["created"]) if self.window else None
        (lag_p50, lag_p99) = self._sql(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) "
            "FROM messages_app_message WHERE mailing_id = %s",
            [run["mailing"].pk],
        )[0]
        self.control.configure(error_rate=0.0, garbage_rate=0.0)
        raw_after = self._raw_client(in_flight)
        raw_rate = round((raw_before["rate"] + raw_after["rate"]) / 2, 1)
        ratio = round(run["messages_per_s"] / raw_rate, 3)
        self.results["send"] = _public(run) | {
            "delivery_lag_p50_s": round(lag_p50, 3),
            "delivery_lag_p99_s": round(lag_p99, 3),
            "raw_in_flight": in_flight,
            "raw_before_per_s": raw_before["rate"],
            "raw_after_per_s": raw_after["rate"],
            "raw_limit_per_s": raw_rate,
            "ratio_to_raw": ratio,
            "api_while_sending": api_latency.summary(),
        }
        label = f"{n:,} clients at {self.args.latency * 1000:.0f} ms"
        self.row("send", label, f"{run['wall_s']} s, {run['messages_per_s']:,} msg/s")
        self.row(
            "send",
            f"raw aiohttp, {in_flight} in flight, before / after",
            f"{raw_before['rate']:,} / {raw_after['rate']:,} req/s -> ratio {ratio}",
        )
        self.row("send", "lag p50 / p99", f"{lag_p50:.1f} s / {lag_p99:.1f} s")
        self.row("send", "duplicates; sends after end", f"{run['duplicates']}; {run['sends_after_end']}")
        self.row("send", "worker peak RSS per process / total", _rss(run))
        self.row("send", "API p95 while sending", f"{api_latency.summary()['p95_ms']} ms")
        if self.args.window_zones:
            self.results["send"]["zones"] = len(self.zones)
            self.row("send", "timezones; local window", f"{len(self.zones)}; {bool(window_check)}")
        if window_check:
            self.results["send"]["window"] = window_check
            self.row("send", "acceptances outside their window", window_check["accepted_outside_window"])

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

    def latency_phase(self) -> None:
        self.start_workers()
        senders = min(self.args.workers, self.results["senders_per_mailing"])
        in_flight = self.results["sender_concurrency"] * senders
        latencies = self.args.sweep_latencies
        self._provider_latency(min(latencies))
        raw = self._raw_client(in_flight)  # where the machine's CPU binds before the latency does
        self.results["latency"] = {"raw_in_flight": in_flight, "raw_per_s": raw["rate"], "sweep": []}
        timelines = []
        for latency in latencies:
            ideal = round(min(in_flight / latency, raw["rate"]), 1)
            n = int(ideal * self.args.sweep_seconds)
            self._provider_latency(latency)
            print(f"latency: {n} clients at {latency * 1000:.0f} ms ±50 %, default settings ...", flush=True)
            sampler = InFlightSampler(self.control)
            run = self._send(n, samplers=[sampler])
            timeline = Timeline.of(
                latency=latency,
                created=run["created"],
                accepted_at=[at for _, at in self.control.accepted()],
                in_flight=sampler.samples,
            )
            timelines.append(timeline)
            to_ideal = timeline.seconds_to(0.85 * ideal)
            figures = _public(run) | {
                "latency_s": latency,
                "ideal_per_s": ideal,
                "ratio_to_ideal": round(run["messages_per_s"] / ideal, 3),
                "peak_per_s": round(timeline.peak_rate(), 1),
                "largest_in_flight": max(timeline.in_flight),
                "s_to_90pc_of_peak": timeline.seconds_to(0.9 * timeline.peak_rate()),
                "s_to_85pc_of_ideal": to_ideal,
            }
            self.results["latency"]["sweep"].append(figures)
            self.row(
                "latency",
                f"{n:,} clients at {latency * 1000:,.0f} ms ±50 %, defaults",
                f"{run['messages_per_s']:,} msg/s ({figures['ratio_to_ideal']} of {ideal:,}); "
                f"peak {figures['peak_per_s']:,}/s after {figures['s_to_90pc_of_peak']} s (90 %); "
                f"0.85 of ideal after {to_ideal} s; {figures['largest_in_flight']:,} in flight",
            )
        if self.args.svg:
            self.args.svg.write_text(sweep_svg(timelines))
        if self.args.fair_clients:
            self._fairness_run()
        self.control.configure(latency=self.args.latency, latency_jitter=0.0)

    def _provider_latency(self, mean: float) -> None:
        self.control.configure(
            latency=mean, latency_jitter=mean * LATENCY_SPREAD, error_rate=0.0, garbage_rate=0.0
        )

    def _fairness_run(self) -> None:
        """A big mailing alone, then the same with small ones created a round trip after it: when each
        small one was delivered, and what the big one kept of its rate alone."""
        self._provider_latency(FAIR_LATENCY)
        big_size = self.args.fair_clients
        print(f"latency: fairness at {FAIR_LATENCY:.0f} s, {big_size} clients alone ...", flush=True)
        alone = self._big_and_small(big_size, 0)
        print(
            f"latency: the same with {FAIR_SMALL_MAILINGS} mailings of {FAIR_SMALL_CLIENTS} ...", flush=True
        )
        beside = self._big_and_small(big_size, FAIR_SMALL_MAILINGS)
        delays = beside["small_delivered_after_s"]
        kept = round(beside["big_per_s"] / alone["big_per_s"], 3)
        self.results["latency"]["fairness"] = {
            "latency_s": FAIR_LATENCY,
            "big_alone_per_s": alone["big_per_s"],
            "big_beside_small_per_s": beside["big_per_s"],
            "big_rate_kept": kept,
            "small_delivered_after_s": delays,
        }
        self.row(
            "latency",
            f"fairness at {FAIR_LATENCY:.0f} s: {big_size:,} clients, then "
            f"{FAIR_SMALL_MAILINGS} x {FAIR_SMALL_CLIENTS} a round trip later",
            f"small ones delivered {min(delays)} to {max(delays)} s after creation; big one "
            f"{beside['big_per_s']} msg/s, {kept} of {alone['big_per_s']} alone",
        )

    def _big_and_small(self, big_size: int, small_count: int) -> dict:
        self._reset_tables()
        self._insert_clients(big_size, tag="big")
        small_tags = [f"small{index}" for index in range(small_count)]
        for index, tag in enumerate(small_tags):
            self._insert_clients(FAIR_SMALL_CLIENTS, tag=tag, first=big_size + 1 + index * FAIR_SMALL_CLIENTS)
        big = self._create_mailing(ends_in=3600, filter_tag="big")
        big_created = time.time()
        time.sleep(FAIR_LATENCY)  # the big one's first round trip is in flight
        small = {}
        for tag in small_tags:
            small[self._create_mailing(ends_in=3600, filter_tag=tag).pk] = time.time()
        total = big_size + small_count * FAIR_SMALL_CLIENTS
        while sum(self._final_count(pk) for pk in [big.pk, *small]) < total:
            time.sleep(0.25)
        accepted_at = dict(self.control.accepted())
        mailing_of = dict(self._sql("SELECT id, mailing_id FROM messages_app_message"))
        last = defaultdict(float)
        for msg_id, at in accepted_at.items():
            last[mailing_of[msg_id]] = max(last[mailing_of[msg_id]], at)
        return {
            "big_per_s": round(big_size / (last[big.pk] - big_created), 1),
            "small_delivered_after_s": sorted(round(last[pk] - created, 1) for pk, created in small.items()),
        }

    def soak_phase(self) -> None:
        n = self.args.soak_messages
        self.start_workers()
        self.control.configure(latency=self.args.latency)
        print(f"soak: {n} messages at {self.args.latency * 1000:.0f} ms ...", flush=True)
        queue = QueueSampler(self.redis)
        run = self._send(n, samplers=[queue])
        tenth = max(1, n // 10)
        first_end, last_start, last_end, first_start = self._sql(
            "SELECT (array_agg(sent_at ORDER BY sent_at))[%s], (array_agg(sent_at ORDER BY sent_at))[%s], "
            "max(sent_at), min(sent_at) FROM messages_app_message WHERE mailing_id = %s AND status = 'sent'",
            [tenth, n - tenth + 1, run["mailing"].pk],
        )[0]
        first_rate = tenth / max(0.001, (first_end - first_start).total_seconds())
        last_rate = tenth / max(0.001, (last_end - last_start).total_seconds())
        samples = run["rss_samples_mb"]
        rss_start = samples[len(samples) // 10] if samples else 0.0
        self.results["soak"] = _public(run) | {
            "first_tenth_per_s": round(first_rate, 1),
            "last_tenth_per_s": round(last_rate, 1),
            "rss_total_mb_at_10_percent": round(rss_start, 1),
            "rss_total_mb_at_end": round(samples[-1] if samples else 0.0, 1),
            "celery_queue_max": queue.peak,
            "celery_queue_last": queue.last,
        }
        self.row(
            "soak", f"{n:,} messages at {self.args.latency * 1000:.0f} ms", f"{run['messages_per_s']:,} msg/s"
        )
        self.row("soak", "first / last tenth", f"{first_rate:,.0f} / {last_rate:,.0f} msg/s")
        self.row(
            "soak",
            "worker RSS total at 10 % / end / peak",
            f"{rss_start:.0f} / {samples[-1]:.0f} / {run['worker_peak_rss_mb_total']:.0f} MB",
        )
        self.row("soak", "Celery queue length max / last", f"{queue.peak} / {queue.last}")

    def baseline_phase(self) -> None:
        from django.db import transaction

        from mailing_service.celery import app

        n = self.args.baseline_messages
        self.start_workers(include="bench.card_tasks")
        self.control.configure(latency=self.args.latency)
        self._reset_tables()
        self._insert_clients(n)
        print(f"baseline: {n} per-message Celery tasks with requests ...", flush=True)
        # A mailing that has not started: our senders leave it alone, the card's tasks send it.
        mailing = self._create_mailing(starts_in=86400, ends_in=86400)
        with transaction.atomic():
            self._sql(
                "INSERT INTO messages_app_message (mailing_id, client_id, status, attempts, last_error, "
                "claimed_by, created_at, next_attempt_at) "
                "SELECT %s, id, 'pending', 0, '', '', now(), now() FROM clients_client",
                [mailing.pk],
            )
        ids = [row[0] for row in self._sql("SELECT id FROM messages_app_message ORDER BY id")]
        started = time.time()
        for message_id in ids:
            app.send_task("bench.card_tasks.card_send_message", args=(message_id,))
        while self._final_count(mailing.pk) < n:
            time.sleep(0.25)
        card_rate = n / (time.time() - started)
        self.stop_workers()
        threads = self._raw_client(self.args.baseline_threads, client="requests")
        in_flight = self.results["sender_concurrency"] * self.args.workers
        aiohttp_raw = self._raw_client(in_flight, first_id=10**13)
        self.results["baseline"] = {
            "messages": n,
            "card_tasks_per_s": round(card_rate, 1),
            "requests_threads": self.args.baseline_threads,
            "requests_thread_pool_per_s": threads["rate"],
            "aiohttp_in_flight": in_flight,
            "aiohttp_per_s": aiohttp_raw["rate"],
        }
        latency = f"{self.args.latency * 1000:.0f} ms"
        self.row(
            "baseline",
            f"card: one Celery task per message, requests ({n:,}, {latency})",
            f"{card_rate:,.1f} msg/s",
        )
        self.row(
            "baseline",
            f"requests thread pool, {self.args.baseline_threads} threads",
            f"{threads['rate']:,} req/s",
        )
        self.row("baseline", f"aiohttp, {in_flight} in flight", f"{aiohttp_raw['rate']:,} req/s")

    def ratelimit_phase(self) -> None:
        rate = self.args.rate_limit
        n = int(rate * self.args.rate_seconds)
        self.control.configure(latency=self.args.latency, rate_limit=rate)
        self.results["ratelimit"] = {}
        for label, configured in (("PROVIDER_RATE_LIMIT set", str(rate)), ("learned from 429s", "")):
            overrides = {"SENDERS_PER_MAILING": "4", "PROVIDER_RATE_LIMIT": configured}
            self.start_workers(nodes=2, **overrides)
            print(f"ratelimit: provider allows {rate:.0f}/s, {label}, {n} clients ...", flush=True)
            run = self._send(n)
            accepted = sorted(at for _, at in self.control.accepted())
            windows = _window_rates(accepted, RATE_LIMIT_CHECK_WINDOW)
            achieved = len(accepted) / (accepted[-1] - accepted[0])
            share_429 = run["throttled"] / run["requests"]
            self.results["ratelimit"][label] = _public(run) | {
                "provider_allows_per_s": rate,
                "achieved_per_s": round(achieved, 1),
                "share_429": round(share_429, 4),
                "window_rates": [round(r, 1) for r in windows],
            }
            within = all(abs(r - rate) <= 0.05 * rate for r in windows) if windows else None
            self.row(
                "ratelimit",
                f"{label}: achieved of {rate:.0f}/s",
                f"{achieved:,.1f} msg/s ({achieved / rate:.1%})",
            )
            self.row(
                "ratelimit",
                f"{label}: share of 429; breaker trips",
                f"{share_429:.2%}; {run['breaker_trips']}",
            )
            self.row(
                "ratelimit",
                f"{label}: {RATE_LIMIT_CHECK_WINDOW:.0f} s windows min / max (within +-5 %)",
                f"{min(windows, default=0):,.0f} / {max(windows, default=0):,.0f} ({within})",
            )
        self.control.configure(rate_limit=0)

    def scaleout_phase(self) -> None:
        n, latency = self.args.scaleout_clients, self.args.slow_latency
        self.control.configure(latency=latency)
        overrides = {
            "SENDERS_PER_MAILING": "2",
            "SENDER_CONCURRENCY_MAX": str(self.args.scaleout_ceiling),
        }
        rates = {}
        for nodes in (1, 2):
            # One process per node, so that two nodes are two of what one node is.
            self.start_workers(nodes=nodes, concurrency=1, **overrides)
            print(f"scaleout: {n} clients at {latency * 1000:.0f} ms on {nodes} node(s) ...", flush=True)
            run = self._send(n)
            rates[nodes] = run["messages_per_s"]
            self.results.setdefault("scaleout", {})[f"{nodes}_nodes"] = _public(run)
            self.row(
                "scaleout",
                f"{nodes} node(s) x 1 process, {latency * 1000:.0f} ms",
                f"{run['messages_per_s']:,} msg/s",
            )
        self.row("scaleout", "two nodes / one node", f"{rates[2] / rates[1]:.2f}x")
        self.control.configure(latency=self.args.latency)

    def size_phase(self) -> None:
        from mailings.models import Mailing

        n = self.args.fanout_clients
        self.start_workers()
        self._reset_tables()
        self._insert_clients(n)
        # The provider answers 503 throughout, so the breaker keeps senders quiet and the
        # fan-out is what the worker spends itself on.
        self.control.outage("503", 3600)
        print(f"size: fan-out of {n} clients ...", flush=True)
        # The statistics list, as the console polls it. Not the client list: its page count is a
        # COUNT(*) over every client, slow at this size; it is timed on its own afterwards.
        api_latency = ApiLatencySampler(self.session, f"{self.api}/mailings/statistics/")
        with processes.RssSampler(*self.workers) as rss, api_latency:
            mailing = self._create_mailing(ends_in=3600)
            while not Mailing.objects.filter(pk=mailing.pk, fanout_completed_at__isnull=False).exists():
                time.sleep(0.25)
        mailing.refresh_from_db()
        self.stop_workers()
        created = self._sql("SELECT count(*) FROM messages_app_message WHERE mailing_id = %s", [mailing.pk])[
            0
        ][0]
        self._sql("VACUUM ANALYZE messages_app_message")
        table_bytes = self._sql("SELECT pg_total_relation_size('messages_app_message')")[0][0]
        requests_made = range(self.args.stats_requests)
        general = _latencies(self.session, [f"{self.api}/mailings/statistics/"] * len(requests_made))
        client_list = _latencies(self.session, [f"{self.api}/clients/?page={6 + i}" for i in range(20)])
        one = _latencies(
            self.session,
            [f"{self.api}/mailings/{mailing.pk}/statistics/?page={1 + i}" for i in requests_made],
        )
        self._reset_tables()  # nothing of it may be sent later
        self.control.outage("none", 0)
        seconds = (mailing.fanout_completed_at - mailing.launched_at).total_seconds()
        self.results["size"] = {
            "clients": n,
            "messages_created": created,
            "fanout_seconds": round(seconds, 2),
            "worker_peak_rss_mb_per_process": round(rss.peak_process_mb, 1),
            "worker_peak_rss_mb_total": round(rss.peak_total_mb, 1),
            "api_while_fanout": api_latency.summary(),
            "statistics_list": general,
            "statistics_one_mailing": one,
            "client_list": client_list,
            "messages_table_bytes": table_bytes,
            "bytes_per_message": round(table_bytes / max(1, created)),
        }
        self.row(
            "size",
            f"fan-out of {n:,} clients",
            f"{seconds:.1f} s, worker {rss.peak_process_mb:.0f} MB per process",
        )
        self.row(
            "size",
            f"statistics list p50 / p95, {created:,} messages",
            f"{general['p50_ms']} / {general['p95_ms']} ms",
        )
        self.row("size", "one mailing's statistics p50 / p95", f"{one['p50_ms']} / {one['p95_ms']} ms")
        self.row(
            "size", "API p95 during the fan-out (statistics list)", f"{api_latency.summary()['p95_ms']} ms"
        )
        self.row(
            "size",
            f"client list p50 / p95, {n:,} clients",
            f"{client_list['p50_ms']} / {client_list['p95_ms']} ms",
        )
        self.row(
            "size",
            "database size per message (table + indexes)",
            f"{table_bytes / max(1, created):.0f} bytes",
        )

    def stats_phase(self) -> None:
        self.stop_workers()
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
            "claimed_by, created_at, sent_at, next_attempt_at) "
            # Ended mailings hold final statuses only: 80 % sent, 10 % failed, 10 % expired.
            "SELECT m.id, c.id, (ARRAY['sent','sent','sent','sent','sent','sent','sent','sent',"
            "'failed','expired'])[1 + (c.id + m.id) %% 10], 1, '', '', now(), now(), now() "
            "FROM mailings_mailing m CROSS JOIN clients_client c"
        )
        # As autovacuum would soon after a bulk load: statistics, and the visibility map that
        # index-only scans rely on.
        self._sql("VACUUM ANALYZE")
        first_id = self._sql("SELECT min(id) FROM mailings_mailing")[0][0]
        pages = max(1, mailings // 50)
        requests_made = range(self.args.stats_requests)
        general = _latencies(
            self.session, [f"{self.api}/mailings/statistics/?page={1 + i % pages}" for i in requests_made]
        )
        one = _latencies(
            self.session,
            [f"{self.api}/mailings/{first_id + (i * 7) % mailings}/statistics/" for i in requests_made],
        )
        self.results["stats"] = {
            "messages": per_mailing * mailings,
            "mailings": mailings,
            "general": general,
            "per_mailing": one,
        }
        label = f"{per_mailing * mailings:,} messages in {mailings:,} mailings"
        self.row("stats", f"list p50 / p95, {label}", f"{general['p50_ms']} / {general['p95_ms']} ms")
        self.row("stats", "one mailing p50 / p95", f"{one['p50_ms']} / {one['p95_ms']} ms")

    def table(self) -> str:
        widths = [max(len(row[i]) for row in self.rows) for i in range(3)] if self.rows else [0, 0, 0]
        lines = [f"| {'phase':<{widths[0]}} | {'measure':<{widths[1]}} | {'result':<{widths[2]}} |"]
        lines.append(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|")
        for phase, measure, value in self.rows:
            lines.append(f"| {phase:<{widths[0]}} | {measure:<{widths[1]}} | {value:<{widths[2]}} |")
        return "\n".join(lines)


class ApiLatencySampler(processes.PeriodicSampler):
    """Calls the API every second while a phase runs: is it still responsive while the worker is busy?
    (The console polls every 3 s; faster polling would load PostgreSQL and take its CPU from the
    senders being measured.)"""

    interval = 1.0

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


class InFlightSampler(processes.PeriodicSampler):
    """Requests the provider holds, four times a second: (time, count)."""

    def __init__(self, control: FakeProviderControl):
        super().__init__()
        self._control = control
        self.samples: list[tuple[float, int]] = []

    def sample(self) -> None:
        self.samples.append((time.time(), self._control.stats()["in_flight"]))


class QueueSampler(processes.PeriodicSampler):
    """The Celery queue's length once a second: does work pile up in the broker?"""

    interval = 1.0

    def __init__(self, connection: redis.Redis):
        super().__init__()
        self._redis = connection
        self.peak = self.last = 0

    def sample(self) -> None:
        self.last = self._redis.llen(QUEUE)
        self.peak = max(self.peak, self.last)


def _window_rates(times: list[float], window: float) -> list[float]:
    """Rates over consecutive full windows, from the end of the first window (the ramp) on."""
    if not times:
        return []
    rates, start, index = [], times[0] + window, 0
    while start + window <= times[-1]:
        while times[index] < start:
            index += 1
        end = index
        while end < len(times) and times[end] < start + window:
            end += 1
        rates.append((end - index) / window)
        start += window
    return rates


def _public(run: dict) -> dict:
    return {key: value for key, value in run.items() if key not in ("mailing", "created", "rss_samples_mb")}


def _rss(run: dict) -> str:
    return f"{run['worker_peak_rss_mb_per_process']:.0f} / {run['worker_peak_rss_mb_total']:.0f} MB"


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
    if len(took_ms) < 2:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "requests": len(took_ms)}
    # Inclusive: with few samples a percentile stays within what was measured.
    cuts = statistics.quantiles(took_ms, n=100, method="inclusive")
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
        for phase in args.phases:
            getattr(bench, f"{phase}_phase")()
    finally:
        bench.teardown()
        # What was measured is shown even when a later phase failed.
        report = json.dumps(bench.results, indent=2)
        print(report)
        print(bench.table())
        if args.json:
            args.json.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
