"""The failover phase: two providers share a mailing by weight; at 30 % one starts refusing
connections. Measured: how long until all traffic is on the other, every message final, none
lost, and the duplicates."""

import secrets
import time

from fake_provider.client import FakeProviderProcess
from harness.sender_logs import attempts_on, traffic_moved_after

from .context import Bench

FAIL_AT = 0.3  # share of the mailing final when the first provider starts refusing
TOKEN_VARIABLES = {"a": "BENCH_PROVIDER_A_TOKEN", "b": "BENCH_PROVIDER_B_TOKEN"}


def failover_phase(bench: Bench) -> None:
    from django.db.models import Count

    from messages_app.models import Message
    from providers.models import Provider

    n = bench.args.failover_clients
    second_token = secrets.token_urlsafe(16)
    with FakeProviderProcess(second_token, latency=bench.args.latency, seed=2) as second:
        bench.control.configure(latency=bench.args.latency)
        for name, fake in (("a", bench.provider), ("b", second)):
            Provider.objects.create(name=name, url=fake.url, credentials_env=TOKEN_VARIABLES[name])
        bench.start_workers(**{TOKEN_VARIABLES["a"]: bench.token, TOKEN_VARIABLES["b"]: second_token})
        try:
            bench.reset_tables()
            second.control.reset()
            bench.insert_clients(n)
            print(
                f"failover: {n} clients over two providers at {bench.args.latency * 1000:.0f} ms ...",
                flush=True,
            )
            mailing = bench.create_mailing(ends_in=3600)
            while bench.final_count(mailing.pk) < FAIL_AT * n:
                time.sleep(0.05)
            bench.control.outage("refuse", 3600)
            failed_at = time.time()
            while bench.final_count(mailing.pk) < n:
                time.sleep(0.25)
            finished = time.time()
            on_a, on_b = bench.control.accepted(), second.control.accepted()
        finally:
            bench.control.outage("none")
            bench.stop_workers()
            Provider.objects.all().delete()
    ids = set(Message.objects.filter(mailing_id=mailing.pk).values_list("id", flat=True))
    accepted = {msg_id for msg_id, _ in on_a} | {msg_id for msg_id, _ in on_b}
    statuses = dict(
        Message.objects.filter(mailing_id=mailing.pk).values_list("status").annotate(count=Count("id"))
    )
    moved_after = traffic_moved_after(attempts_on("a", sorted(bench.logdir.glob("worker-*.log"))), failed_at)
    results = {
        "clients": n,
        "failed_at_share": FAIL_AT,
        "traffic_on_b_after_s": round(moved_after, 2),
        "after_failure_until_all_final_s": round(finished - failed_at, 2),
        "accepted_by_a": len(on_a),
        "accepted_by_b": len(on_b),
        "lost": len(ids - accepted),
        "duplicates": len(on_a) + len(on_b) - len(accepted),
        "statuses": statuses,
    }
    bench.results["failover"] = results
    bench.row("failover", "all traffic on the other provider after", f"{moved_after:.1f} s")
    bench.row(
        "failover",
        "every message final; lost; duplicates",
        f"{statuses}; {results['lost']}; {results['duplicates']}",
    )
