"""Delivery receipts on their way to the database: taken by the web in a Redis list, written by the
`write_receipts` task in batches (`services.receipts_record`), so a flood of receipts costs a few
transactions a second, not one each. Without Redis (RECEIPT_QUEUE_URL empty) each receipt is written
as it comes.

The list is read with LRANGE and trimmed only after its batch is committed, by one writer at a time
(a lock with a lease): a writer that dies mid-batch leaves it for the next, and writing a receipt
twice changes nothing.
"""

import functools
import logging
import time

import redis
from django.conf import settings
from redis.exceptions import RedisError

from ops import metrics

from . import services
from .sending.receipts import Answer, Receipt

log = logging.getLogger(__name__)

QUEUE_KEY = "receipts:queue"
WRITER_KEY = "receipts:writer"
WRITER_LEASE_MS = 30_000  # longer than a run's budget and its last batch
RUN_BUDGET = 5.0  # seconds one run writes before it leaves the rest to the next


def receipt_secret(provider: str) -> str | None:
    """The provider's receipt secret, None when it takes no receipts."""
    return settings.RECEIPT_SECRETS.get(provider) or None


@functools.cache
def _queue(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


# What pushing to the receipt queue raises when Redis cannot be reached.
QUEUE_ERRORS = (RedisError, OSError)


def receipt_answered(answer: Answer, provider: str) -> None:
    """Counts and logs what a receipt endpoint answered (the web's, the receipt server's), but for
    the receipts the writer counts once written."""
    if answer.outcome:
        metrics.RECEIPTS.labels(answer.outcome).inc()
    if answer.status == 403:
        log.warning("receipt for provider %s refused: %s", provider, answer.body["detail"])


def receipt_deferred(provider: str, error: Exception) -> None:
    """A receipt answered 503 because the queue could not take it: its provider tries again."""
    metrics.RECEIPTS.labels("deferred").inc()
    log.error("receipt for provider %s deferred: the queue is unreachable (%s)", provider, error)


def receipts_take(receipts: list[Receipt]) -> None:
    """Queue final receipts for the writer, or write them now when there is no queue."""
    if not receipts:
        return
    if not settings.RECEIPT_QUEUE_URL:
        _write(receipts)
        return
    _queue(settings.RECEIPT_QUEUE_URL).rpush(QUEUE_KEY, *(receipt.encoded() for receipt in receipts))


def receipts_write_queued() -> int:
    """Write what waits in the queue, in batches of RECEIPT_BATCH_SIZE, for up to RUN_BUDGET
    seconds; another run doing it already makes this one return at once. Receipts that came before
    their acceptance was written go back to the end of the queue, until RECEIPT_EARLY_KEEP.
    Returns how many receipts were taken from the queue."""
    queue = _queue(settings.RECEIPT_QUEUE_URL)
    holder = f"{time.time()}"
    if not queue.set(WRITER_KEY, holder, nx=True, px=WRITER_LEASE_MS):
        return 0
    # Only what is queued now: what a run puts back waits for the next run.
    waiting, taken, until = queue.llen(QUEUE_KEY), 0, time.monotonic() + RUN_BUDGET
    try:
        while taken < waiting and time.monotonic() < until:
            raw = queue.lrange(QUEUE_KEY, 0, min(settings.RECEIPT_BATCH_SIZE, waiting - taken) - 1)
            if not raw:
                break
            early = _write([Receipt.decoded(item) for item in raw])
            kept = [
                receipt
                for receipt in early
                if receipt.received_at > time.time() - settings.RECEIPT_EARLY_KEEP
            ]
            _count_early(lost=len(early) - len(kept))
            pipeline = queue.pipeline()  # MULTI: the batch leaves and its early receipts go back at once
            if kept:
                pipeline.rpush(QUEUE_KEY, *(receipt.encoded() for receipt in kept))
            pipeline.ltrim(QUEUE_KEY, len(raw), -1)
            pipeline.execute()
            taken += len(raw)
    finally:
        # Only our own lease: after a run longer than it, another writer may hold the key.
        if queue.get(WRITER_KEY) == holder.encode():
            queue.delete(WRITER_KEY)
    return taken


def _count_early(*, lost: int) -> None:
    if lost:
        metrics.RECEIPTS.labels("unknown").inc(lost)
        log.warning("%s receipts came before their acceptance and it never came: left out", lost)


def _write(receipts: list[Receipt]) -> list[Receipt]:
    """Writes a batch; returns the receipts that came before their acceptance was written."""
    written = services.receipts_record(receipts=receipts)
    for result in ("delivered", "undelivered", "unchanged"):
        metrics.RECEIPTS.labels(result).inc(getattr(written, result))
    if written.unknown:
        metrics.RECEIPTS.labels("unknown").inc(len(written.unknown))
        log.warning(
            "%s receipts name no message of their provider, left out: ids %s",
            len(written.unknown),
            ", ".join(map(str, written.unknown[:10])) + (" ..." if len(written.unknown) > 10 else ""),
        )
    return written.early
