"""The rate-limit phase: a provider allowing R sends/s, with PROVIDER_RATE_LIMIT=R and without it."""

from . import measure
from .context import Bench

RATE_LIMIT_CHECK_WINDOW = 10.0  # seconds over which the rate limit must hold


def ratelimit_phase(bench: Bench) -> None:
    rate = bench.args.rate_limit
    n = int(rate * bench.args.rate_seconds)
    bench.control.configure(latency=bench.args.latency, rate_limit=rate)
    bench.results["ratelimit"] = {}
    for label, configured in (("PROVIDER_RATE_LIMIT set", str(rate)), ("learned from 429s", "")):
        overrides = {"SENDERS_PER_MAILING": "4", "PROVIDER_RATE_LIMIT": configured}
        bench.start_workers(nodes=2, **overrides)
        print(f"ratelimit: provider allows {rate:.0f}/s, {label}, {n} clients ...", flush=True)
        run = measure.send(bench, n)
        accepted = sorted(at for _, at in bench.control.accepted())
        windows = _window_rates(accepted, RATE_LIMIT_CHECK_WINDOW)
        achieved = len(accepted) / (accepted[-1] - accepted[0])
        share_429 = run["throttled"] / run["requests"]
        bench.results["ratelimit"][label] = measure.public(run) | {
            "provider_allows_per_s": rate,
            "achieved_per_s": round(achieved, 1),
            "share_429": round(share_429, 4),
            "window_rates": [round(r, 1) for r in windows],
        }
        within = all(abs(r - rate) <= 0.05 * rate for r in windows) if windows else None
        bench.row(
            "ratelimit",
            f"{label}: achieved of {rate:.0f}/s",
            f"{achieved:,.1f} msg/s ({achieved / rate:.1%})",
        )
        bench.row(
            "ratelimit",
            f"{label}: share of 429; breaker trips",
            f"{share_429:.2%}; {run['breaker_trips']}",
        )
        bench.row(
            "ratelimit",
            f"{label}: {RATE_LIMIT_CHECK_WINDOW:.0f} s windows min / max (within +-5 %)",
            f"{min(windows, default=0):,.0f} / {max(windows, default=0):,.0f} ({within})",
        )
    bench.control.configure(rate_limit=0)


def _window_rates(times: list[float], window: float) -> list[float]:
    """Rates over consecutive full windows, from the end of the first window (the ramp) on."""
    if not times:
        return []
    rates, start, index = [], times[0] + window, 0
    while start + window <= times[-1]:
        while times[index] < start:
            index += 1
        end = index
        while end < len(times) and times[end] < start + window:
            end += 1
        rates.append((end - index) / window)
        start += window
    return rates
