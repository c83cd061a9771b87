"""What the fake provider recorded of the sends: every outcome, every acceptance and when."""

import time
from collections import deque
from typing import Any

OUTCOMES = (
    "ok",
    "rejected",
    "error_5xx",
    "garbage",
    "hang",
    "unauthorized",
    "bad_request",
    "throttled",
    "abandoned",
)


# The texts of the latest acceptances kept, for tests to read what reached the provider; bounded, so
# that a bench of millions of sends does not grow the fake.
RECENT_TEXTS = 1000


class Records:
    """What happened to the sends since the last reset: what tests and benchmarks trust."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests_total = 0
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        # One (msg_id, time.time()) per acceptance, duplicates included, in acceptance order.
        self.accepted: list[tuple[int, float]] = []
        self.accepts_by_id: dict[int, int] = {}
        self.recent_texts: deque[tuple[int, str]] = deque(maxlen=RECENT_TEXTS)

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] += 1

    def accept(self, msg_id: int, text: str) -> None:
        self.outcomes["ok"] += 1
        self.recent_texts.append((msg_id, text))
        self.accepted.append((msg_id, time.time()))
        self.accepts_by_id[msg_id] = self.accepts_by_id.get(msg_id, 0) + 1

    def stats(self, after: float | None = None) -> dict[str, Any]:
        accepted_total = len(self.accepted)
        unique = len(self.accepts_by_id)
        stats = {
            "requests_total": self.requests_total,
            "accepted_total": accepted_total,
            "unique_accepted": unique,
            "duplicates": accepted_total - unique,
            "outcomes": dict(self.outcomes),
            "first_accept_at": self.accepted[0][1] if self.accepted else None,
            "last_accept_at": self.accepted[-1][1] if self.accepted else None,
        }
        if after is not None:
            stats["accepted_after"] = sum(1 for _, accepted_at in self.accepted if accepted_at > after)
        return stats
