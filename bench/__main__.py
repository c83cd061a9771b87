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
  failover   N clients over two providers (rows of equal weight) at --latency; at 30 % final the
             first refuses connections: time until all traffic is on the other, every message
             final, none lost, duplicates.
  receipts   N clients through Kannel's sendsms; the fake posts each message's final report
             (1 s +/- 0.5 s after acceptance) to one receipt server process while the send goes on:
             the send against the raw client (probe API, same fake), the time from the last report
             posted until every message is delivered or undelivered, reports posted / recorded, CPU
             seconds by process, and the receipts/s of one receipt server and of one web process
             (a gunicorn of one sync worker), from a plain aiohttp client.
  scaleout   one mailing on one worker node, then on two nodes (``-n a@%h``, ``-n b@%h``), at 500 ms.
  size       fan-out of N clients (provider down), worker memory, statistics p95 with the N
             messages in the database, database size per message.
  stats      p50/p95 of the statistics endpoints over many messages across many mailings.
  consent    fan-out and send of N clients plain, with CLIENT_MAX_MESSAGES_PER_DAY on, and with one
             client in ten on the opt-out list.

With --window-zones N the send phase's clients live in N timezones and its mailing carries a local
window: half of the zones are inside it, the other half share one UTC offset and their window opens
--window-opens-in seconds after the mailing is created; every acceptance is checked against its
client's window. --without-window runs the same clients without the window, for comparison.
"""

import argparse
import json
import signal
import sys
from pathlib import Path

from .baseline import baseline_phase
from .consent import consent_phase
from .context import Bench
from .failover import failover_phase
from .latency import latency_phase
from .ratelimit import ratelimit_phase
from .receipts import receipts_phase
from .scaleout import scaleout_phase
from .send import send_phase
from .size import size_phase
from .soak import soak_phase
from .stats import stats_phase

# In the order they run.
PHASES = {
    "send": send_phase,
    "latency": latency_phase,
    "soak": soak_phase,
    "baseline": baseline_phase,
    "ratelimit": ratelimit_phase,
    "failover": failover_phase,
    "receipts": receipts_phase,
    "scaleout": scaleout_phase,
    "size": size_phase,
    "stats": stats_phase,
    "consent": consent_phase,
}


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
    parser.add_argument("--failover-clients", type=int, default=100_000, help="failover phase size")
    parser.add_argument("--receipts-clients", type=int, default=100_000, help="receipts phase size")
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
    parser.add_argument("--consent-clients", type=int, default=20_000, help="consent phase size")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args()
    sizes = {
        "send": args.clients,
        "latency": args.sweep_seconds,
        "soak": args.soak_messages,
        "baseline": args.baseline_messages,
        "ratelimit": args.rate_limit,
        "failover": args.failover_clients,
        "receipts": args.receipts_clients,
        "scaleout": args.scaleout_clients,
        "size": args.fanout_clients,
        "stats": args.stats_messages,
        "consent": args.consent_clients,
    }
    args.phases = [phase for phase in PHASES if phase not in args.skip and sizes[phase]]
    return args


def table(rows: list[tuple[str, str, str]]) -> str:
    """The results as a Markdown table: phase, measure, result."""
    widths = [max(len(row[i]) for row in rows) for i in range(3)] if rows else [0, 0, 0]
    lines = [f"| {'phase':<{widths[0]}} | {'measure':<{widths[1]}} | {'result':<{widths[2]}} |"]
    lines.append(f"|{'-' * (widths[0] + 2)}|{'-' * (widths[1] + 2)}|{'-' * (widths[2] + 2)}|")
    for phase, measure, value in rows:
        lines.append(f"| {phase:<{widths[0]}} | {measure:<{widths[1]}} | {value:<{widths[2]}} |")
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    # A stopped benchmark still removes its processes, database and Redis keys (teardown below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(args)
    try:
        bench.setup()
        for phase in args.phases:
            PHASES[phase](bench)
    finally:
        bench.teardown()
        # What was measured is shown even when a later phase failed.
        report = json.dumps(bench.results, indent=2)
        print(report)
        print(table(bench.rows))
        if args.json:
            args.json.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
