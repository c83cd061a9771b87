"""The latency phase: a sweep of provider latencies with default settings, what the pace reaches
and how fast against the ideal; then the fairness run, a big mailing alone and beside small ones."""

import time
from collections import defaultdict

from . import measure
from .context import Bench
from .sweep import Timeline, sweep_svg

# A real provider's latency varies from request to request: the latency phase's is uniform within
# this share of its mean either side.
LATENCY_SPREAD = 0.5
# The fairness run: a big mailing, then these many small ones of this size created a round trip later.
FAIR_LATENCY = 5.0
FAIR_SMALL_MAILINGS, FAIR_SMALL_CLIENTS = 10, 20


def latency_phase(bench: Bench) -> None:
    bench.start_workers()
    senders = min(bench.args.workers, bench.results["senders_per_mailing"])
    in_flight = bench.results["sender_concurrency"] * senders
    latencies = bench.args.sweep_latencies
    _provider_latency(bench, min(latencies))
    raw = measure.raw_client(bench, in_flight)  # where the machine's CPU binds before the latency does
    bench.results["latency"] = {"raw_in_flight": in_flight, "raw_per_s": raw["rate"], "sweep": []}
    timelines = []
    for latency in latencies:
        ideal = round(min(in_flight / latency, raw["rate"]), 1)
        n = int(ideal * bench.args.sweep_seconds)
        _provider_latency(bench, latency)
        print(f"latency: {n} clients at {latency * 1000:.0f} ms ±50 %, default settings ...", flush=True)
        sampler = measure.InFlightSampler(bench.control)
        run = measure.send(bench, n, samplers=[sampler])
        timeline = Timeline.of(
            latency=latency,
            created=run["created"],
            accepted_at=[at for _, at in bench.control.accepted()],
            in_flight=sampler.samples,
        )
        timelines.append(timeline)
        to_ideal = timeline.seconds_to(0.85 * ideal)
        figures = measure.public(run) | {
            "latency_s": latency,
            "ideal_per_s": ideal,
            "ratio_to_ideal": round(run["messages_per_s"] / ideal, 3),
            "peak_per_s": round(timeline.peak_rate(), 1),
            "largest_in_flight": max(timeline.in_flight),
            "s_to_90pc_of_peak": timeline.seconds_to(0.9 * timeline.peak_rate()),
            "s_to_85pc_of_ideal": to_ideal,
        }
        bench.results["latency"]["sweep"].append(figures)
        bench.row(
            "latency",
            f"{n:,} clients at {latency * 1000:,.0f} ms ±50 %, defaults",
            f"{run['messages_per_s']:,} msg/s ({figures['ratio_to_ideal']} of {ideal:,}); "
            f"peak {figures['peak_per_s']:,}/s after {figures['s_to_90pc_of_peak']} s (90 %); "
            f"0.85 of ideal after {to_ideal} s; {figures['largest_in_flight']:,} in flight",
        )
    if bench.args.svg:
        bench.args.svg.write_text(sweep_svg(timelines))
    if bench.args.fair_clients:
        _fairness_run(bench)
    bench.control.configure(latency=bench.args.latency, latency_jitter=0.0)


def _provider_latency(bench: Bench, mean: float) -> None:
    bench.control.configure(
        latency=mean, latency_jitter=mean * LATENCY_SPREAD, error_rate=0.0, garbage_rate=0.0
    )


def _fairness_run(bench: Bench) -> None:
    """A big mailing alone, then the same with small ones created a round trip after it: when each
    small one was delivered, and what the big one kept of its rate alone."""
    _provider_latency(bench, FAIR_LATENCY)
    big_size = bench.args.fair_clients
    print(f"latency: fairness at {FAIR_LATENCY:.0f} s, {big_size} clients alone ...", flush=True)
    alone = _big_and_small(bench, big_size, 0)
    print(f"latency: the same with {FAIR_SMALL_MAILINGS} mailings of {FAIR_SMALL_CLIENTS} ...", flush=True)
    beside = _big_and_small(bench, big_size, FAIR_SMALL_MAILINGS)
    delays = beside["small_delivered_after_s"]
    kept = round(beside["big_per_s"] / alone["big_per_s"], 3)
    bench.results["latency"]["fairness"] = {
        "latency_s": FAIR_LATENCY,
        "big_alone_per_s": alone["big_per_s"],
        "big_beside_small_per_s": beside["big_per_s"],
        "big_rate_kept": kept,
        "small_delivered_after_s": delays,
    }
    bench.row(
        "latency",
        f"fairness at {FAIR_LATENCY:.0f} s: {big_size:,} clients, then "
        f"{FAIR_SMALL_MAILINGS} x {FAIR_SMALL_CLIENTS} a round trip later",
        f"small ones delivered {min(delays)} to {max(delays)} s after creation; big one "
        f"{beside['big_per_s']} msg/s, {kept} of {alone['big_per_s']} alone",
    )


def _big_and_small(bench: Bench, big_size: int, small_count: int) -> dict:
    bench.reset_tables()
    bench.insert_clients(big_size, tag="big")
    small_tags = [f"small{index}" for index in range(small_count)]
    for index, tag in enumerate(small_tags):
        bench.insert_clients(FAIR_SMALL_CLIENTS, tag=tag, first=big_size + 1 + index * FAIR_SMALL_CLIENTS)
    big = bench.create_mailing(ends_in=3600, filter_tag="big")
    big_created = time.time()
    time.sleep(FAIR_LATENCY)  # the big one's opening round trip is in flight
    small = {}
    for tag in small_tags:
        small[bench.create_mailing(ends_in=3600, filter_tag=tag).pk] = time.time()
    total = big_size + small_count * FAIR_SMALL_CLIENTS
    while sum(bench.final_count(pk) for pk in [big.pk, *small]) < total:
        time.sleep(0.25)
    accepted_at = dict(bench.control.accepted())
    mailing_of = dict(bench.sql("SELECT id, mailing_id FROM messages_app_message"))
    last = defaultdict(float)
    for msg_id, at in accepted_at.items():
        last[mailing_of[msg_id]] = max(last[mailing_of[msg_id]], at)
    return {
        "big_per_s": round(big_size / (last[big.pk] - big_created), 1),
        "small_delivered_after_s": sorted(round(last[pk] - created, 1) for pk, created in small.items()),
    }
