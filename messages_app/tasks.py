"""Celery wiring of the sending pipeline: the launch and sweeper tasks, and one sender per pool process.

The sender does not run as a task: a thread of each pool process runs it from the moment the
process starts (`worker_process_init`), so sending never takes a pool slot and launch, scan and
sweep tasks never queue behind it. How a pool process learns of a warm shutdown: the main process
closes the pool once its running tasks are done, the process leaves its loop and sends
`worker_process_shutdown`, where the sender stops (and a SIGTERM sent to the whole process group
reaches the process itself, which starts the same stop at once).

Pools without processes: `solo` sends `worker_process_init` in the main process, `threads` sends
nothing, so there the main process runs the one sender itself and stops it at `worker_shutdown`
(Celery keeps its own SIGTERM handling). `gevent` and `eventlet` turn threads into greenlets, under
which the sender's event loop would hold up every task: such a worker refuses to start unless
SENDER_ENABLED is false.
"""

import logging
import signal
import threading
from datetime import datetime, timedelta

from celery import shared_task
from celery.concurrency import get_implementation
from celery.signals import worker_init, worker_process_init, worker_process_shutdown, worker_shutdown
from django.conf import settings
from django.utils import timezone

from clients.models import OptOut
from clients.tasks import END_OPTED_OUT
from mailings.tasks import LAUNCH_MAILING
from ops.logging import log_context

from . import services
from .launch import mailing_launch
from .receipts import receipts_write_queued

log = logging.getLogger(__name__)

_stopping = threading.Event()
_sender = None
_sender_thread: threading.Thread | None = None
_main_process_sends = False  # a pool without processes: the worker's own process runs the sender
# The pools whose processes run tasks where a sender thread can run beside them.
POOLS_WITH_SENDERS = {"prefork": False, "solo": True, "thread": True}  # True: in the main process


def _send_until_stopped() -> None:
    """A sender that cannot be built (no usable provider, the database away) or fails for good (a
    bug, a database gone for long) is tried again after a second."""
    global _sender
    from .senders import sender_from_settings  # only pool processes load aiohttp and uvloop

    while not _stopping.is_set():
        try:
            _sender = sender_from_settings()
        except Exception:
            log.exception("sender not started; trying again in a second")
            _stopping.wait(1.0)
            continue
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


@worker_init.connect
def check_pool(sender, **kwargs) -> None:
    """Starts the worker's one sender itself where no pool process will; refuses a pool that
    cannot run one."""
    global _main_process_sends
    if not settings.SENDER_ENABLED:
        return
    pool = get_implementation(sender.pool_cls).__module__.rpartition(".")[2]
    if pool not in POOLS_WITH_SENDERS:
        message = (
            f"the {pool} pool cannot run a sender (its event loop would hold up the greenlets): "
            "start the worker with -P prefork (the default), solo or threads, or set "
            "SENDER_ENABLED=false for a worker that only runs tasks"
        )
        log.critical("worker not started: %s", message)
        raise SystemExit(f"worker not started: {message}")  # Celery's signals swallow an Exception
    _main_process_sends = POOLS_WITH_SENDERS[pool]
    if pool == "thread":  # sends no worker_process_init
        _start_sender()


@worker_process_init.connect
def start_sender(**kwargs) -> None:
    if not settings.SENDER_ENABLED or _sender_thread is not None:
        return
    _start_sender()
    if not _main_process_sends:  # a prefork pool process: SIGTERM stops its sender at once
        signal.signal(signal.SIGTERM, _request_stop)


def _start_sender() -> None:
    global _sender_thread
    _sender_thread = threading.Thread(target=_send_until_stopped, name="sender", daemon=True)
    _sender_thread.start()


@worker_process_shutdown.connect
def stop_sender(**kwargs) -> None:
    if _sender_thread is None:
        return
    _request_stop()
    _sender_thread.join(settings.SENDER_STOP_GRACE + 5)
    log.info("sender stopped")


@worker_shutdown.connect
def stop_main_process_sender(**kwargs) -> None:
    if _main_process_sends:
        stop_sender()


@shared_task(name=LAUNCH_MAILING)
def launch_mailing(mailing_id: int) -> None:
    """Enqueued by name from mailings (its save hook, and the scanner mailings.tasks.launch_due_mailings)."""
    with log_context(mailing_id=mailing_id):
        mailing_launch(mailing_id=mailing_id)


@shared_task(name=END_OPTED_OUT)
def end_opted_out(since: str) -> None:
    """Enqueued by name from clients when phones are opted out (from `since` on, ISO 8601)."""
    recent = OptOut.objects.filter(created_at__gte=datetime.fromisoformat(since)).values("phone")
    log.info(
        "opt-outs since %s: %s pending messages opted out", since, services.messages_opt_out(phones=recent)
    )


# The sweeper opts out again the messages of phones opted out this recently: a lost end_opted_out
# task. Older ones are caught anyway when a claim reaches their messages.
OPT_OUT_SWEEPS = 4


@shared_task(soft_time_limit=60)
def sweep_messages() -> None:
    """Re-drive what a crash left behind, expire what ended mailings left unsent, end the messages of
    recent opt-outs, and fold the message tallies the statistics sum."""
    now = timezone.now()
    released = services.messages_release_expired_leases(now=now)
    expired = services.messages_expire_pending(now=now)  # expired, or unknown if maybe sent
    recent = now - timedelta(seconds=OPT_OUT_SWEEPS * settings.MESSAGE_SWEEP_INTERVAL)
    opted_out = services.messages_opt_out(
        phones=OptOut.objects.filter(created_at__gte=recent).values("phone")
    )
    services.message_tallies_fold()
    services.sender_heartbeats_forget(now=now)
    if released or expired or opted_out:
        log.info(
            "sweep: %s leases released, %s unsent messages ended, %s opted out", released, expired, opted_out
        )


@shared_task(soft_time_limit=60)
def write_receipts() -> None:
    """Every RECEIPT_DRAIN_INTERVAL (beat): the queued delivery receipts, written in batches."""
    receipts_write_queued()


@shared_task
def send_test_messages(test_send_ids: list[int]) -> None:
    """Enqueued by name from mailings.services.mailing_test_send; the rows hold the outcomes."""
    from .testsends import testsends_deliver  # loads aiohttp: in the worker only, when it runs

    testsends_deliver(test_send_ids=test_send_ids)
