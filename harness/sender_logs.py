"""What the senders' per-attempt log lines say ("... provider=<name> outcome=<outcome> ..."): when
requests to a provider were settled, for the failover drills of the end-to-end tests and the bench."""

from datetime import datetime
from pathlib import Path

TIMESTAMP_LENGTH = len("2026-12-06 10:05:01,123")  # the text log format's asctime


def attempts_on(provider: str, logs: list[Path]) -> list[float]:
    """When requests to the provider were settled, in these worker logs (text format, local time)."""
    marker = f" provider={provider} outcome="
    return sorted(
        datetime.strptime(line[:TIMESTAMP_LENGTH], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for log in logs
        for line in log.read_text().splitlines()
        if marker in line
    )


def traffic_moved_after(attempts: list[float], failed_at: float) -> float:
    """Seconds from the failure to the last attempt on the failed provider before its first quiet
    second: what follows are its breaker's lone trial requests."""
    after = [at for at in attempts if at >= failed_at]
    for at, following in zip(after, after[1:], strict=False):
        if following - at >= 1.0:
            return at - failed_at
    return (after[-1] - failed_at) if after else 0.0
