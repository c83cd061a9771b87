"""How the phases measure: a mailing sent until every message is final, the plain client it is
compared with, the samplers that watch a phase while it runs, and request latencies."""

import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from typing import TypeVar

import redis
import requests

from fake_provider.client import FakeProviderControl

from . import processes
from .context import QUEUE, Bench

T = TypeVar("T")


def raw_client(
    bench: Bench, concurrency: int, *, client: str = "aiohttp", first_id: int | None = None
) -> dict:
    """The plain client of `fake_provider.rawload`, in a process of its own as a client without
    this service would run: in this one, its garbage collections walked Django's objects too."""
    command = [sys.executable, "-m", "fake_provider.rawload", "--url", bench.env["PROVIDER_URL"]]
    command += ["--client", client, "--concurrency", str(concurrency)]
    command += ["--seconds", str(bench.args.raw_seconds)]
    if first_id is not None:
        command += ["--first-id", str(first_id)]
    result = processes.run_json(command, bench.env, timeout=bench.args.raw_seconds + 60)
    if result["errors"]:  # its rate counts every answer: refusals would pass for speed
        raise RuntimeError(f"the raw client got {result['errors']} errors: {result}")
    return result


def raw_in_flight(bench: Bench) -> int:
    """As many requests in flight as the senders of one mailing hold."""
    return bench.results["sender_concurrency"] * min(bench.args.workers, bench.results["senders_per_mailing"])


def between_raw_runs(bench: Bench, in_flight: int, send: Callable[[], T]) -> tuple[T, dict]:
    """`send()` between two runs of the raw client at --latency, with the workers idle both times:
    what `send` returned, and the raw client's rates. The ratio takes their mean: a machine's speed
    drifts from one minute to the next, and a single measure after the send would judge the send by
    that drift."""
    bench.control.configure(latency=bench.args.latency, error_rate=0.0, garbage_rate=0.0)
    before = raw_client(bench, in_flight)
    result = send()
    bench.control.configure(error_rate=0.0, garbage_rate=0.0)
    after = raw_client(bench, in_flight)
    return result, {
        "raw_in_flight": in_flight,
        "raw_before_per_s": before["rate"],
        "raw_after_per_s": after["rate"],
        "raw_limit_per_s": round((before["rate"] + after["rate"]) / 2, 1),
    }


def raw_row(bench: Bench, phase: str, raw: dict, ratio: float, *, client: str = "raw aiohttp") -> None:
    bench.row(
        phase,
        f"{client}, {raw['raw_in_flight']} in flight, before / after",
        f"{raw['raw_before_per_s']:,} / {raw['raw_after_per_s']:,} req/s -> ratio {ratio}",
    )


def breaker_trips(bench: Bench) -> int:
    return sum(path.read_text().count("provider paused") for path in bench.logdir.glob("worker-*.log"))


def send(bench: Bench, n: int, *, samplers=(), ends_in: float = 3600) -> dict:
    """A mailing to `n` fresh clients, until every message is final: what the provider saw."""
    bench.reset_tables()
    bench.insert_clients(n)
    breaker_before = breaker_trips(bench)
    with contextlib.ExitStack() as running:
        rss = running.enter_context(processes.RssSampler(*bench.workers))
        for sampler in samplers:
            running.enter_context(sampler)
        created = time.time()
        mailing = bench.create_mailing(ends_in=ends_in)
        while bench.final_count(mailing.pk) < n:
            time.sleep(0.25)
    stats = bench.control.stats(after=mailing.end_at.timestamp())
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
        "breaker_trips": breaker_trips(bench) - breaker_before,
        "worker_peak_rss_mb_per_process": round(rss.peak_process_mb, 1),
        "worker_peak_rss_mb_total": round(rss.peak_total_mb, 1),
        "rss_samples_mb": rss.totals_mb,
    }


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
        return percentiles(self._took)


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


def public(run: dict) -> dict:
    return {key: value for key, value in run.items() if key not in ("mailing", "created", "rss_samples_mb")}


def rss(run: dict) -> str:
    return f"{run['worker_peak_rss_mb_per_process']:.0f} / {run['worker_peak_rss_mb_total']:.0f} MB"


def latencies(session: requests.Session, urls: list[str]) -> dict[str, float]:
    for url in urls[:5]:  # warm-up: connections, caches
        session.get(url, timeout=30).raise_for_status()
    took = []
    for url in urls:
        started = time.perf_counter()
        session.get(url, timeout=30).raise_for_status()
        took.append((time.perf_counter() - started) * 1000)
    return percentiles(took)


def percentiles(took_ms: list[float]) -> dict[str, float]:
    if len(took_ms) < 2:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "requests": len(took_ms)}
    # Inclusive: with few samples a percentile stays within what was measured.
    cuts = statistics.quantiles(took_ms, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1), "requests": len(took_ms)}
