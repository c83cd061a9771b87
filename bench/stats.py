"""The stats phase: the statistics endpoints over many messages across many mailings."""

from . import measure
from .context import Bench


def stats_phase(bench: Bench) -> None:
    bench.stop_workers()
    mailings, total = bench.args.stats_mailings, bench.args.stats_messages
    per_mailing = total // mailings
    bench.reset_tables()
    bench.insert_clients(per_mailing)
    print(f"stats: {per_mailing * mailings} messages across {mailings} mailings ...", flush=True)
    bench.sql(
        "INSERT INTO mailings_mailing (start_at, end_at, text, filter_operator_code, filter_tag, "
        "created_at, updated_at, launched_at, fanout_cursor, fanout_completed_at) "
        "SELECT now() - interval '2 days' + n * interval '1 minute', now() - interval '1 day', "
        "'Past offer ' || n, '', '', now(), now(), now(), 0, now() FROM generate_series(1, %s) AS n",
        [mailings],
    )
    bench.sql(
        "INSERT INTO messages_app_message (mailing_id, client_id, status, attempts, last_error, "
        "claimed_by, created_at, sent_at, next_attempt_at) "
        # Ended mailings hold final statuses only: 80 % sent, 10 % failed, 10 % expired.
        "SELECT m.id, c.id, (ARRAY['sent','sent','sent','sent','sent','sent','sent','sent',"
        "'failed','expired'])[1 + (c.id + m.id) %% 10], 1, '', '', now(), now(), now() "
        "FROM mailings_mailing m CROSS JOIN clients_client c"
    )
    # As autovacuum would soon after a bulk load: statistics, and the visibility map that
    # index-only scans rely on.
    bench.sql("VACUUM ANALYZE")
    first_id = bench.sql("SELECT min(id) FROM mailings_mailing")[0][0]
    pages = max(1, mailings // 50)
    requests_made = range(bench.args.stats_requests)
    general = measure.latencies(
        bench.session, [f"{bench.api}/mailings/statistics/?page={1 + i % pages}" for i in requests_made]
    )
    one = measure.latencies(
        bench.session,
        [f"{bench.api}/mailings/{first_id + (i * 7) % mailings}/statistics/" for i in requests_made],
    )
    bench.results["stats"] = {
        "messages": per_mailing * mailings,
        "mailings": mailings,
        "general": general,
        "per_mailing": one,
    }
    label = f"{per_mailing * mailings:,} messages in {mailings:,} mailings"
    bench.row("stats", f"list p50 / p95, {label}", f"{general['p50_ms']} / {general['p95_ms']} ms")
    bench.row("stats", "one mailing p50 / p95", f"{one['p50_ms']} / {one['p95_ms']} ms")
