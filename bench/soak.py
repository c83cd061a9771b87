"""The soak phase: a long send, throughput of its first and last tenth, worker memory, Celery queue."""

from . import measure
from .context import Bench


def soak_phase(bench: Bench) -> None:
    n = bench.args.soak_messages
    bench.start_workers()
    bench.control.configure(latency=bench.args.latency)
    print(f"soak: {n} messages at {bench.args.latency * 1000:.0f} ms ...", flush=True)
    queue = measure.QueueSampler(bench.redis)
    run = measure.send(bench, n, samplers=[queue])
    tenth = max(1, n // 10)
    first_end, last_start, last_end, first_start = bench.sql(
        "SELECT (array_agg(sent_at ORDER BY sent_at))[%s], (array_agg(sent_at ORDER BY sent_at))[%s], "
        "max(sent_at), min(sent_at) FROM messages_app_message WHERE mailing_id = %s AND status = 'sent'",
        [tenth, n - tenth + 1, run["mailing"].pk],
    )[0]
    first_rate = tenth / max(0.001, (first_end - first_start).total_seconds())
    last_rate = tenth / max(0.001, (last_end - last_start).total_seconds())
    samples = run["rss_samples_mb"]
    rss_start = samples[len(samples) // 10] if samples else 0.0
    bench.results["soak"] = measure.public(run) | {
        "first_tenth_per_s": round(first_rate, 1),
        "last_tenth_per_s": round(last_rate, 1),
        "rss_total_mb_at_10_percent": round(rss_start, 1),
        "rss_total_mb_at_end": round(samples[-1] if samples else 0.0, 1),
        "celery_queue_max": queue.peak,
        "celery_queue_last": queue.last,
    }
    bench.row(
        "soak", f"{n:,} messages at {bench.args.latency * 1000:.0f} ms", f"{run['messages_per_s']:,} msg/s"
    )
    bench.row("soak", "first / last tenth", f"{first_rate:,.0f} / {last_rate:,.0f} msg/s")
    bench.row(
        "soak",
        "worker RSS total at 10 % / end / peak",
        f"{rss_start:.0f} / {samples[-1]:.0f} / {run['worker_peak_rss_mb_total']:.0f} MB",
    )
    bench.row("soak", "Celery queue length max / last", f"{queue.peak} / {queue.last}")
