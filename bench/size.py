"""The size phase: a big fan-out with the provider down, worker memory, the API with the messages in
the database, the database size per message."""

import time

from . import measure, processes
from .context import Bench


def size_phase(bench: Bench) -> None:
    from mailings.models import Mailing

    n = bench.args.fanout_clients
    bench.start_workers()
    bench.reset_tables()
    bench.insert_clients(n)
    # The provider answers 503 throughout, so the breaker keeps senders quiet and the
    # fan-out is what the worker spends itself on.
    bench.control.outage("503", 3600)
    print(f"size: fan-out of {n} clients ...", flush=True)
    # The statistics list, as the console polls it. Not the client list: its page count is a
    # COUNT(*) over every client, slow at this size; it is timed on its own afterwards.
    api_latency = measure.ApiLatencySampler(bench.session, f"{bench.api}/mailings/statistics/")
    with processes.RssSampler(*bench.workers) as rss, api_latency:
        mailing = bench.create_mailing(ends_in=3600)
        while not Mailing.objects.filter(pk=mailing.pk, fanout_completed_at__isnull=False).exists():
            time.sleep(0.25)
    mailing.refresh_from_db()
    bench.stop_workers()
    created = bench.sql("SELECT count(*) FROM messages_app_message WHERE mailing_id = %s", [mailing.pk])[0][0]
    bench.sql("VACUUM ANALYZE messages_app_message")
    table_bytes = bench.sql("SELECT pg_total_relation_size('messages_app_message')")[0][0]
    requests_made = range(bench.args.stats_requests)
    general = measure.latencies(bench.session, [f"{bench.api}/mailings/statistics/"] * len(requests_made))
    client_list = measure.latencies(bench.session, [f"{bench.api}/clients/?page={6 + i}" for i in range(20)])
    one = measure.latencies(
        bench.session,
        [f"{bench.api}/mailings/{mailing.pk}/statistics/?page={1 + i}" for i in requests_made],
    )
    bench.reset_tables()  # nothing of it may be sent later
    bench.control.outage("none", 0)
    seconds = (mailing.fanout_completed_at - mailing.launched_at).total_seconds()
    bench.results["size"] = {
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
    bench.row(
        "size",
        f"fan-out of {n:,} clients",
        f"{seconds:.1f} s, worker {rss.peak_process_mb:.0f} MB per process",
    )
    bench.row(
        "size",
        f"statistics list p50 / p95, {created:,} messages",
        f"{general['p50_ms']} / {general['p95_ms']} ms",
    )
    bench.row("size", "one mailing's statistics p50 / p95", f"{one['p50_ms']} / {one['p95_ms']} ms")
    bench.row("size", "API p95 during the fan-out (statistics list)", f"{api_latency.summary()['p95_ms']} ms")
    bench.row(
        "size",
        f"client list p50 / p95, {n:,} clients",
        f"{client_list['p50_ms']} / {client_list['p95_ms']} ms",
    )
    bench.row(
        "size",
        "database size per message (table + indexes)",
        f"{table_bytes / max(1, created):.0f} bytes",
    )
