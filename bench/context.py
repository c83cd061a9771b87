"""What every phase shares: the deployment the bench starts (provider, worker nodes, beat, web), its
database and Redis, the API session, and the results and table rows the phases add to."""

import argparse
import itertools
import os
import secrets
import tempfile
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import redis
import requests

from fake_provider.client import FakeProviderProcess, free_port
from mailings.window import LocalWindow, all_zones

from . import processes

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
QUEUE = "celery"


class Bench:
    """One benchmark run: the processes and the database it starts, what the phases send through, and
    what they found."""

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
        keys += connection.scan_iter("receipts:*")  # the delivery receipts' queue and its writer's lease
        connection.delete(QUEUE, "unacked", "unacked_index", *keys)
        print(f"(logs of this run: {self.logdir})")

    # --- the database ----------------------------------------------------------------------------

    def _admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as connection:
            connection.execute(sql)

    def sql(self, sql: str, params=()) -> list[tuple]:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(sql, list(params))  # always a list: "%%" then means "%"
            return cursor.fetchall() if cursor.description else []

    def reset_tables(self) -> None:
        # The message tallies go with the messages (their TRUNCATE trigger).
        self.sql("TRUNCATE messages_app_message, mailings_mailing, clients_client RESTART IDENTITY CASCADE")
        self.control.reset()

    def insert_clients(self, count: int, *, tag: str = "", first: int = 1) -> None:
        self.sql(
            "INSERT INTO clients_client (phone, operator_code, tag, timezone, created_at, updated_at) "
            "SELECT '79' || lpad(n::text, 9, '0'), '9' || lpad((n %% 100)::text, 2, '0'), "
            "%s, (%s::text[])[1 + n %% %s], now(), now() FROM generate_series(%s, %s) AS n",
            [tag, self.zones, len(self.zones), first, first + count - 1],
        )
        self.sql("ANALYZE clients_client")

    def create_mailing(self, *, ends_in: float, starts_in: float = 0.0, filter_tag: str = ""):
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

    def final_count(self, mailing_id: int) -> int:
        """From the message tallies: a COUNT(*) over the mailing's messages four times a second would
        take PostgreSQL CPU from the senders being measured."""
        from messages_app.selectors import message_counts_by_mailing

        counts = message_counts_by_mailing([mailing_id])[mailing_id]
        return sum(counts[status] for status in ("sent", "delivered", "undelivered", "failed", "expired"))


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
