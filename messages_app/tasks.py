"""Celery wiring of the sending pipeline: the sweeper task, and one sender per pool process.

The sender does not run as a task: a thread of each pool process runs it from the moment the
process starts (`worker_process_init`), so sending never takes a pool slot and launch, scan and
sweep tasks never queue behind it. How a pool process learns of a warm shutdown: the main process
closes the pool once its running tasks are done, the process leaves its loop and sends
`worker_process_shutdown`, where the sender stops (and a SIGTERM sent to the whole process group
reaches the process itself, which starts the same stop at once).
"""

import logging
import os
import signal
import socket
import threading
import uuid
from pathlib import Path

from celery import shared_task
from celery.signals import worker_process_init, worker_process_shutdown
from django.conf import settings
from django.utils import timezone

from . import services

log = logging.getLogger(__name__)

_stopping = threading.Event()
_sender = None
_sender_thread: threading.Thread | None = None


def _send_until_stopped() -> None:
    """A sender that fails for good (a bug, a database gone for long) is replaced after a second."""
    global _sender
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


def sender_from_settings():
    """A sender as the settings describe it (only pool processes load aiohttp and uvloop)."""
    from .sending.clock import Clock
    from .sending.django_store import DjangoMessageStore
    from .sending.gate import ProviderGate
    from .sending.pacing import pacer_for
    from .sending.sender import Sender
    from .sending.transports.probe import ProbeTransport

    clock = Clock()
    return Sender(
        transport=ProbeTransport(
            base_url=settings.PROVIDER_URL,
            token=settings.PROVIDER_TOKEN,
            connect_timeout=settings.PROVIDER_CONNECT_TIMEOUT,
            max_connections=settings.SENDER_CONCURRENCY_MAX,
        ),
        gate=ProviderGate(
            breaker_threshold=settings.SENDER_BREAKER_THRESHOLD,
            breaker_pause=settings.SENDER_BREAKER_PAUSE,
            auth_pause=settings.SENDER_AUTH_PAUSE,
            clock=clock.wall,
            pacer=pacer_for(
                initial=settings.SENDER_CONCURRENCY,
                minimum=settings.SENDER_CONCURRENCY_MIN,
                maximum=settings.SENDER_CONCURRENCY_MAX,
                rate=settings.PROVIDER_RATE_LIMIT,
                redis_url=settings.RATE_LIMIT_REDIS_URL,
                file_path=Path(settings.RATE_LIMIT_FILE),
            ),
        ),
        store=DjangoMessageStore(holder=sender_holder(), clock=clock),
        clock=clock,
        # The ceiling: the gate's pace decides how much of it is used.
        concurrency=settings.SENDER_CONCURRENCY_MAX,
        end_margin=settings.SENDER_END_MARGIN,
        stop_grace=settings.SENDER_STOP_GRACE,
        request_timeout=settings.PROVIDER_REQUEST_TIMEOUT,
    )


def sender_holder() -> str:
    """Names a sender in the leases and slots it holds: host, process, and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


@shared_task
def send_test_messages(test_send_ids: list[int]) -> None:
    """Enqueued by name from mailings.services.mailing_test_send; the rows hold the outcomes."""
    from .sending.testsends import testsends_deliver  # loads aiohttp: in the worker only, when it runs

    testsends_deliver(test_send_ids=test_send_ids)
