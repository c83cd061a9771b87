"""Prometheus metrics written by every process: web, Celery worker children, beat.

Django-free on purpose, so that transports (which know no Django) can call it. Counters and
histograms only: with PROMETHEUS_MULTIPROC_DIR set, prometheus-client's multiprocess mode writes
each process's values to files in that shared folder and the web's `/metrics` adds them up (see
ops.views). Figures the database knows (messages by status, backlog, mailing states) are not kept
here but computed at scrape time by mailing_service.collectors.

Labels are bounded: outcome, error class, route pattern, status code, task name, rate-limit scope.
Never a message, client, phone or mailing id.
"""

import asyncio
import os
import socket
import time
from collections.abc import Mapping

from prometheus_client import Counter, Histogram, values

NAMESPACE = "sms"


HOST = socket.gethostname()  # read once: prometheus-client asks for the identifier on every update


def process_identifier() -> str:
    """Names a process's metric files. Multiprocess mode uses the pid alone, but containers sharing the
    folder (compose's web, worker and beat) reuse pids, and two processes writing one file corrupt
    each other's counts; host name and pid together are unique across them."""
    return f"{HOST}-{os.getpid()}"


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before any metric is created
    values.ValueClass = values.MultiProcessValue(process_identifier)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SEND_ATTEMPTS = Counter(
    "send_attempts",
    "Results written back, by outcome: sent, failed, retry, unknown (sent, answer lost), throttled "
    "(429, given back), deferred and expired (both not attempted).",
    ["outcome"],
    namespace=NAMESPACE,
)
PROVIDER_REQUEST_SECONDS = Histogram(
    "provider_request_duration_seconds",
    "Time from sending a request to the provider to its answer (or error), every request.",
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "provider_errors",
    "Provider requests that did not end in acceptance, by class: timeout, refused, network, 5xx, "
    "429, auth (401/403), invalid (400), rejected (code != 0), garbage (not the expected JSON), "
    "other_status, cut (the mailing's end or a stopping worker cut the request).",
    ["error_class"],
    namespace=NAMESPACE,
)
PROVIDER_PAUSES = Counter(
    "provider_pauses",
    "Pauses of all sending started by a sender: breaker (failures in a row) or auth (token refused).",
    ["reason"],
    namespace=NAMESPACE,
)
FANOUT_MESSAGES = Counter(
    "fanout_messages_created",
    "Message rows created by mailing fan-outs.",
    namespace=NAMESPACE,
)
RECEIPTS = Counter(
    "receipts",
    "Delivery receipts, by what became of them: delivered, undelivered (written), unchanged "
    "(repeated, or after another final one), unknown (no such message of that provider), "
    "intermediate (queued or accepted by the SMSC), malformed (400), refused (bad signature, 403), "
    "deferred (the queue was unreachable: 503, the provider tries again).",
    ["result"],
    namespace=NAMESPACE,
)
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests served by the web, by method, route pattern and status code.",
    ["method", "route", "status"],
    namespace=NAMESPACE,
)
HTTP_REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time the web took to answer, by method and route pattern.",
    ["method", "route"],
    namespace=NAMESPACE,
    buckets=LATENCY_BUCKETS,
)
RATE_LIMIT_UNCOUNTED = Counter(
    "rate_limit_uncounted",
    "API rate-limit checks let through uncounted because the cache did not answer, by scope.",
    ["scope"],
    namespace=NAMESPACE,
)
ENQUEUE_FAILURES = Counter(
    "enqueue_failures",
    "Tasks not enqueued after a commit because the broker did not answer, by task name; a periodic "
    "task picks their work up.",
    ["task"],
    namespace=NAMESPACE,
)
CELERY_TASKS = Counter(
    "celery_tasks",
    "Celery task runs that ended, by task name and state (succeeded, failed, retried).",
    ["task", "state"],
    namespace=NAMESPACE,
)
CELERY_TASK_SECONDS = Histogram(
    "celery_task_duration_seconds",
    "Run time of Celery tasks, by task name.",
    ["task"],
    namespace=NAMESPACE,
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)


def attempts_recorded(outcomes: Mapping[str, int]) -> None:
    """Counts a batch of written-back results: {outcome: number}."""
    for outcome, number in outcomes.items():
        if number:
            SEND_ATTEMPTS.labels(str(outcome)).inc(number)


def answer_error_class(status: int, error) -> str:
    """Error class of an answer the transport refused (`error` is its TransportError)."""
    if status == 200:
        return "rejected" if error.permanent else "garbage"
    if status in (401, 403):
        return "auth"
    if status == 400:
        return "invalid"
    if status == 429:
        return "429"
    if 500 <= status < 600:
        return "5xx"
    return "other_status"


def network_error_class(error: BaseException) -> str:
    """Error class of a request that got no answer (the exception the HTTP client raised)."""
    if isinstance(error, TimeoutError) or "Timeout" in type(error).__name__:
        return "timeout"
    if isinstance(error, ConnectionRefusedError) or "Connector" in type(error).__name__:
        return "refused"
    return "network"


class ProviderCall:
    """Times one provider request and counts its error class. In the transport:

    with metrics.ProviderCall() as call:
        ...  # on an answer: call.status = status

    A class rather than a @contextmanager: it runs for every message, and a generator's machinery
    cost more than the timing itself.
    """

    __slots__ = ("status", "_started")

    def __enter__(self) -> "ProviderCall":
        self.status: int | None = None
        self._started = time.perf_counter()
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        PROVIDER_REQUEST_SECONDS.observe(time.perf_counter() - self._started)
        # Cancelled from outside: the caller knows why (its timeout, the mailing's end, a stopping
        # worker) and counts it as `timeout` or `cut`.
        if error is None or isinstance(error, asyncio.CancelledError):
            return
        if self.status is not None:
            error_class = answer_error_class(self.status, error)
        elif error.__context__ is not None:  # the transport re-raised the client's error as its own
            error_class = network_error_class(error.__context__)
        else:
            error_class = "network"
        PROVIDER_ERRORS.labels(error_class).inc()
