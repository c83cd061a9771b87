"""The baseline phase: the design card's one Celery task per message with requests, then a requests
thread pool and the aiohttp client against the same provider."""

import time

from . import measure
from .context import Bench


def baseline_phase(bench: Bench) -> None:
    from django.db import transaction

    from mailing_service.celery import app

    n = bench.args.baseline_messages
    bench.start_workers(include="bench.card_tasks")
    bench.control.configure(latency=bench.args.latency)
    bench.reset_tables()
    bench.insert_clients(n)
    print(f"baseline: {n} per-message Celery tasks with requests ...", flush=True)
    # A mailing that has not started: our senders leave it alone, the card's tasks send it.
    mailing = bench.create_mailing(starts_in=86400, ends_in=86400)
    with transaction.atomic():
        bench.sql(
            "INSERT INTO messages_app_message (mailing_id, client_id, status, attempts, last_error, "
            "claimed_by, created_at, next_attempt_at) "
            "SELECT %s, id, 'pending', 0, '', '', now(), now() FROM clients_client",
            [mailing.pk],
        )
    ids = [row[0] for row in bench.sql("SELECT id FROM messages_app_message ORDER BY id")]
    started = time.time()
    for message_id in ids:
        app.send_task("bench.card_tasks.card_send_message", args=(message_id,))
    while bench.final_count(mailing.pk) < n:
        time.sleep(0.25)
    card_rate = n / (time.time() - started)
    bench.stop_workers()
    threads = measure.raw_client(bench, bench.args.baseline_threads, client="requests")
    in_flight = bench.results["sender_concurrency"] * bench.args.workers
    aiohttp_raw = measure.raw_client(bench, in_flight, first_id=10**13)
    bench.results["baseline"] = {
        "messages": n,
        "card_tasks_per_s": round(card_rate, 1),
        "requests_threads": bench.args.baseline_threads,
        "requests_thread_pool_per_s": threads["rate"],
        "aiohttp_in_flight": in_flight,
        "aiohttp_per_s": aiohttp_raw["rate"],
    }
    latency = f"{bench.args.latency * 1000:.0f} ms"
    bench.row(
        "baseline",
        f"card: one Celery task per message, requests ({n:,}, {latency})",
        f"{card_rate:,.1f} msg/s",
    )
    bench.row(
        "baseline",
        f"requests thread pool, {bench.args.baseline_threads} threads",
        f"{threads['rate']:,} req/s",
    )
    bench.row("baseline", f"aiohttp, {in_flight} in flight", f"{aiohttp_raw['rate']:,} req/s")
