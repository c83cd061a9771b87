"""Celery wiring of the sending pipeline: the launch and sweeper tasks, and one sender per pool process.

The sender does not run as a task: a thread of each pool process runs it from the moment the
process starts (`worker_process_init`), so sending never takes a pool slot and launch, scan and
sweep tasks never queue behind it. How a pool process learns of a warm shutdown: the main process
closes the pool once its running tasks are done, the process leaves its loop and sends
`worker_process_shutdown`, where the sender stops (and a SIGTERM sent to the whole process group
reaches the process itself, which starts the same stop at once).
"""

import logging
import signal
import threading

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown
from django.conf import settings
from django.utils import timezone

from mailings.tasks import LAUNCH_MAILING
from ops.logging import log_context

from . import services
from .launch import mailing_launch
from .receipts import receipts_write_queued

log = logging.getLogger(__name__)

_stopping = threading.Event()
_sender = None
_sender_thread: threading.Thread | None = None


def _send_until_stopped() -> None:
    """A sender that fails for good (a bug, a database gone for long) is replaced after a second."""
    global _sender
    from .senders import sender_from_settings  # only pool processes load aiohttp and uvloop

    while not _stopping.is_set():
        _sender = sender_from_settings()
        if _stopping.is_set():
            break
        log.info("sender %s started", _sender.holder)
        try:
            _sender.run()
        except Exception:
            log.exception("sender %s failed; a new one starts in a second", _sender.holder)
            _stopping.wait(1.0)


def _request_stop(*args) -> None:
    _stopping.set()
    if _sender is not None:
        _sender.request_stop()


@worker_process_init.connect
def start_sender(**kwargs) -> None:
    global _sender_thread
    if not settings.SENDER_ENABLED:
        return
    _sender_thread = threading.Thread(target=_send_until_stopped, name="sender", daemon=True)
    _sender_thread.start()
    signal.signal(signal.SIGTERM, _request_stop)


@worker_process_shutdown.connect
def stop_sender(**kwargs) -> None:
    if _sender_thread is None:
        return
    _request_stop()
    _sender_thread.join(settings.SENDER_STOP_GRACE + 5)
    log.info("sender stopped")


@shared_task(name=LAUNCH_MAILING)
def launch_mailing(mailing_id: int) -> None:
    """Enqueued by name from mailings (its save hook, and the scanner mailings.tasks.launch_due_mailings)."""
    with log_context(mailing_id=mailing_id):
        mailing_launch(mailing_id=mailing_id)


@shared_task(soft_time_limit=60)
def sweep_messages() -> None:
    """Re-drive what a crash left behind, expire what ended mailings left unsent, and fold the
    message tallies the statistics sum."""
    now = timezone.now()
    released = services.messages_release_expired_leases(now=now)
    expired = services.messages_expire_pending(now=now)
    services.message_tallies_fold()
    if released or expired:
        log.info("sweep: %s leases released, %s messages expired", released, expired)


@shared_task(soft_time_limit=60)
def write_receipts() -> None:
    """Every RECEIPT_DRAIN_INTERVAL (beat): the queued delivery receipts, written in batches."""
    receipts_write_queued()


@shared_task
def send_test_messages(test_send_ids: list[int]) -> None:
    """Enqueued by name from mailings.services.mailing_test_send; the rows hold the outcomes."""
    from .testsends import testsends_deliver  # loads aiohttp: in the worker only, when it runs

    testsends_deliver(test_send_ids=test_send_ids)
