"""Support for end-to-end tests: a real Celery worker (with beat) and the fake provider, as processes.

They need PostgreSQL (the test database, shared with the worker) and Redis (broker and cache, the
tests' own db number). Where either is missing the tests skip, except under CI, where they fail.
"""

import os
import sys
from pathlib import Path

import kombu
import pytest
import redis
from django.db import connection

from fake_provider.client import FakeProviderProcess
from harness.processes import Process
from messages_app.models import Message

TOKEN = "e2e-token"
# The same draws of the fake provider's misbehaviour in every run.
FAKE_PROVIDER_SEED = 7


def in_flight_pinned_at(requests: int) -> dict[str, str]:
    """Worker settings that hold each sender at `requests` in flight: a slow mailing on purpose. Left
    to adapt, the limit starts at SENDER_CONCURRENCY_MIN and grows a quarter per round trip."""
    return {
        name: str(requests)
        for name in ("SENDER_CONCURRENCY", "SENDER_CONCURRENCY_MIN", "SENDER_CONCURRENCY_MAX")
    }


# Short pauses and leases, so recoveries show within seconds; retries keep their defaults.
WORKER_SETTINGS = {
    "SENDER_CONCURRENCY": "50",
    "SENDERS_PER_MAILING": "2",
    "SENDER_BREAKER_THRESHOLD": "8",
    "SENDER_BREAKER_PAUSE": "1",
    "SENDER_AUTH_PAUSE": "1",
    "SENDER_LEASE_SECONDS": "3",
    "SENDER_STOP_GRACE": "5",
    "SENDER_END_MARGIN": "0.2",
    "SENDER_WINDOW_MARGIN": "4",  # more than a request can take: connect + read timeouts below
    "PROVIDER_CONNECT_TIMEOUT": "1",
    "PROVIDER_READ_TIMEOUT": "2",
    "MAILING_SCAN_INTERVAL": "1",
    "MESSAGE_SWEEP_INTERVAL": "1",
    "FANOUT_LEASE": "3",
    "LOG_LEVEL": "INFO",
}


def require_real_services(redis_url: str) -> None:
    problems = []
    if connection.vendor != "postgresql":
        problems.append("DATABASE_URL does not point at PostgreSQL")
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
    except (redis.RedisError, ValueError):  # ValueError: the tests fell back to a memory:// broker
        problems.append(f"Redis does not answer at {redis_url}")
    if problems:
        if os.environ.get("CI"):
            pytest.fail("end-to-end tests need real services: " + "; ".join(problems))
        pytest.skip("end-to-end tests need real services: " + "; ".join(problems))


def require_rabbitmq(amqp_url: str) -> None:
    try:
        with kombu.Connection(amqp_url, connect_timeout=2) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:  # kombu raises the transport's own errors
        if os.environ.get("CI"):
            pytest.fail(f"RabbitMQ does not answer at {amqp_url}: {error}")
        pytest.skip(f"RabbitMQ does not answer at {amqp_url}: {error}")


def delete_queue(amqp_url: str, name: str) -> None:
    with kombu.Connection(amqp_url) as connection:
        kombu.Queue(name, channel=connection.default_channel).delete()


def database_url() -> str:
    """The test database, as the worker process must reach it."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker(Process):
    """`celery worker -B` in its own process group (so a test can SIGKILL all of it at once), its
    output in workdir/worker.log; start() returns once it is ready."""

    def __init__(
        self,
        *,
        broker_url: str,
        cache_url: str,
        provider: FakeProviderProcess | None,
        workdir: Path,
        concurrency: int = 2,
        beat: bool = True,
        pool: str = "prefork",
        **overrides: str,
    ):
        command = [sys.executable, "-m", "celery", "-A", "mailing_service", "worker", "-P", pool]
        command += ["-B"] if beat else []
        command += [
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
        ]
        env = (
            os.environ
            | WORKER_SETTINGS
            | {
                "DATABASE_URL": database_url(),
                "CELERY_BROKER_URL": broker_url,
                "CACHE_URL": cache_url,
                "CELERY_BEAT_SCHEDULE_FILENAME": str(workdir / "beat-schedule"),
            }
            | ({"PROVIDER_URL": provider.url, "PROVIDER_TOKEN": provider.token} if provider else {})
            | overrides
        )
        super().__init__(command, env=env, log=workdir / "worker.log", stop_grace=15)

    def start(self) -> "Worker":
        super().start()
        self.wait_for_log(" ready.", timeout=30)
        return self


def counts_by_status(mailing_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Message.objects.filter(mailing_id=mailing_id).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def all_final(mailing_id: int, expected: int) -> bool:
    final = Message.objects.filter(mailing_id=mailing_id, status__in=Message.FINAL_STATUSES).count()
    return final == expected
