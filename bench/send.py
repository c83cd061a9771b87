"""The send phase: N clients at the provider's latency until every message is final, against the plain
client with as many requests in flight before the send and after it; with --window-zones, whether
every acceptance lay inside its client's local window."""

from datetime import datetime

from . import measure
from .context import Bench


def send_phase(bench: Bench) -> None:
    n = bench.args.clients
    bench.start_workers()

    def send() -> tuple[dict, measure.ApiLatencySampler, dict | None, tuple[float, float]]:
        bench.control.configure(error_rate=bench.args.error_rate, garbage_rate=bench.args.garbage_rate)
        print(f"send: {n} clients, provider latency {bench.args.latency * 1000:.0f} ms ...", flush=True)
        api_latency = measure.ApiLatencySampler(bench.session, f"{bench.api}/mailings/statistics/")
        run = measure.send(bench, n, samplers=[api_latency])
        window_check = _window_check(bench, run["mailing"], run["created"]) if bench.window else None
        lags = bench.sql(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) "
            "FROM messages_app_message WHERE mailing_id = %s",
            [run["mailing"].pk],
        )[0]
        return run, api_latency, window_check, lags

    (run, api_latency, window_check, (lag_p50, lag_p99)), raw = measure.between_raw_runs(
        bench, measure.raw_in_flight(bench), send
    )
    ratio = round(run["messages_per_s"] / raw["raw_limit_per_s"], 3)
    bench.results["send"] = measure.public(run) | {
        "delivery_lag_p50_s": round(lag_p50, 3),
        "delivery_lag_p99_s": round(lag_p99, 3),
        **raw,
        "ratio_to_raw": ratio,
        "api_while_sending": api_latency.summary(),
    }
    label = f"{n:,} clients at {bench.args.latency * 1000:.0f} ms"
    bench.row("send", label, f"{run['wall_s']} s, {run['messages_per_s']:,} msg/s")
    measure.raw_row(bench, "send", raw, ratio)
    bench.row("send", "lag p50 / p99", f"{lag_p50:.1f} s / {lag_p99:.1f} s")
    bench.row("send", "duplicates; sends after end", f"{run['duplicates']}; {run['sends_after_end']}")
    bench.row("send", "worker peak RSS per process / total", measure.rss(run))
    bench.row("send", "API p95 while sending", f"{api_latency.summary()['p95_ms']} ms")
    if bench.args.window_zones:
        bench.results["send"]["zones"] = len(bench.zones)
        bench.row("send", "timezones; local window", f"{len(bench.zones)}; {bool(window_check)}")
    if window_check:
        bench.results["send"]["window"] = window_check
        bench.row("send", "acceptances outside their window", window_check["accepted_outside_window"])


def _window_check(bench: Bench, mailing, created: float) -> dict:
    """Whether every acceptance lay inside its client's window, checked per zone group."""
    zone_of = dict(
        bench.sql(
            "SELECT m.id, c.timezone FROM messages_app_message m "
            "JOIN clients_client c ON c.id = m.client_id WHERE m.mailing_id = %s",
            [mailing.pk],
        )
    )
    start = datetime.fromtimestamp(created).astimezone()
    occurrence = {zone: next(bench.window.occurrences(zone, start)) for zone in set(zone_of.values())}
    outside, first_after_opening = 0, {}
    for msg_id, accepted_at in bench.control.accepted():
        zone = zone_of[msg_id]
        opens, closes = occurrence[zone]
        outside += not opens.timestamp() <= accepted_at < closes.timestamp()
        first_after_opening[zone] = min(first_after_opening.get(zone, 1e18), accepted_at - opens.timestamp())
    waited = [first_after_opening[zone] for zone in bench.opening_zones if zone in first_after_opening]
    return {
        "accepted_outside_window": outside,
        "opening_zones_first_send_after_opening_s": round(max(waited), 3) if waited else None,
    }
