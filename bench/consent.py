"""The consent phase: the fan-out and the send with the opt-out list and the frequency cap at work,
next to the same mailing without them, at the provider's latency.

Three runs of N clients (--consent-clients), each a mailing to all of them until every message is
final: plain; the same clients again with CLIENT_MAX_MESSAGES_PER_DAY on (each client already has
one message of the first run in its 24 hours, under the cap, so every claim counts but holds
nothing back); fresh clients with one in ten on the opt-out list (the fan-out leaves them out).
"""

import time

from .context import Bench

CAP = "3"  # above the one message each client already has: measured is the check, not the hold


def consent_phase(bench: Bench) -> None:
    n = bench.args.consent_clients
    bench.control.configure(latency=bench.args.latency, error_rate=0.0, garbage_rate=0.0)
    print(f"consent: {n} clients, plain / with the cap / 10 % opted out ...", flush=True)
    bench.start_workers()
    bench.reset_tables()
    bench.insert_clients(n)
    runs = {"plain": _run(bench, expected=n)}
    bench.start_workers(CLIENT_MAX_MESSAGES_PER_DAY=CAP)
    runs["cap"] = _run(bench, expected=n)
    bench.start_workers()
    bench.reset_tables()
    bench.insert_clients(n)
    bench.sql(
        "INSERT INTO clients_optout (phone, reason, source, created_at) "
        "SELECT phone, '', 'import', now() FROM clients_client WHERE id %% 10 = 0"
    )
    bench.sql("ANALYZE clients_optout")
    runs["opted_out_10pct"] = _run(bench, expected=n - n // 10)
    bench.sql("TRUNCATE clients_optout")
    bench.results["consent"] = {"clients": n, "cap": int(CAP), **runs}
    for name, run in runs.items():
        bench.row(
            "consent",
            f"{name}: fan-out of {n:,} clients; send",
            f"{run['fanout_s']} s ({run['fanout_per_s']:,} clients/s); {run['messages_per_s']:,} msg/s",
        )


def _run(bench: Bench, *, expected: int) -> dict:
    """A mailing to every client until `expected` messages are final (sent, or left out at fan-out)."""
    from mailings.models import Mailing

    bench.control.reset()
    created = time.time()
    mailing = bench.create_mailing(ends_in=3600)
    while bench.final_count(mailing.pk) < expected:
        time.sleep(0.25)
    while not Mailing.objects.filter(pk=mailing.pk, fanout_completed_at__isnull=False).exists():
        time.sleep(0.25)
    mailing.refresh_from_db()
    stats = bench.control.stats()
    fanout = (mailing.fanout_completed_at - mailing.launched_at).total_seconds()
    clients = expected + (mailing.audience_opted_out or 0)
    wall = stats["last_accept_at"] - created
    return {
        "messages": expected,
        "left_out": mailing.audience_opted_out,
        "fanout_s": round(fanout, 2),
        "fanout_per_s": round(clients / fanout),
        "wall_s": round(wall, 2),
        "messages_per_s": round(expected / wall, 1),
        "duplicates": stats["duplicates"],
    }
