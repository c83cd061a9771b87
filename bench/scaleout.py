"""The scale-out phase: one mailing on one worker node, then on two."""

from . import measure
from .context import Bench


def scaleout_phase(bench: Bench) -> None:
    n, latency = bench.args.scaleout_clients, bench.args.slow_latency
    bench.control.configure(latency=latency)
    overrides = {
        "SENDERS_PER_MAILING": "2",
        "SENDER_CONCURRENCY_MAX": str(bench.args.scaleout_ceiling),
    }
    rates = {}
    for nodes in (1, 2):
        # One process per node, so that two nodes are two of what one node is.
        bench.start_workers(nodes=nodes, concurrency=1, **overrides)
        print(f"scaleout: {n} clients at {latency * 1000:.0f} ms on {nodes} node(s) ...", flush=True)
        run = measure.send(bench, n)
        rates[nodes] = run["messages_per_s"]
        bench.results.setdefault("scaleout", {})[f"{nodes}_nodes"] = measure.public(run)
        bench.row(
            "scaleout",
            f"{nodes} node(s) x 1 process, {latency * 1000:.0f} ms",
            f"{run['messages_per_s']:,} msg/s",
        )
    bench.row("scaleout", "two nodes / one node", f"{rates[2] / rates[1]:.2f}x")
    bench.control.configure(latency=bench.args.latency)
