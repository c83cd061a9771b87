"""Tasks sent to the broker once the transaction that asked for them has committed.

The committed rows are the truth and the task only their doorbell: a broker that cannot be reached
then must not turn a done request into a 500, which a client would retry (a second mailing to the
same audience). The failure is logged with what will pick the work up instead and counted in
`sms_enqueue_failures_total`.
"""

import logging
from collections.abc import Callable
from functools import partial

import kombu.exceptions
from celery import current_app
from django.db import transaction

from . import metrics

log = logging.getLogger(__name__)

# What send_task raises when the broker cannot be reached: kombu turns its transports' connection
# errors into OperationalError; a socket error may come through as it is.
BROKER_ERRORS = (kombu.exceptions.OperationalError, OSError)


def enqueue_on_commit(
    task_name: str, args: tuple, *, instead: str, on_failure: Callable[[], None] | None = None
) -> None:
    """Sends the task by name after commit. If the broker cannot be reached, logs `instead` (what
    happens to the work now, for the operator) and calls `on_failure`, if given, to record it."""
    transaction.on_commit(partial(_send, task_name, args, instead, on_failure))


def _send(task_name: str, args: tuple, instead: str, on_failure: Callable[[], None] | None) -> None:
    try:
        current_app.send_task(task_name, args=args)
    except BROKER_ERRORS as error:
        metrics.ENQUEUE_FAILURES.labels(task_name).inc()
        log.error("%s%s not enqueued, the broker did not answer (%r): %s", task_name, args, error, instead)
        if on_failure is not None:
            on_failure()
