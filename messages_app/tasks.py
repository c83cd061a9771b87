"""Celery tasks of the sending pipeline. They only wake work up: the rows hold the state."""

import logging

from celery import shared_task
from django.utils import timezone

from mailings.services import dispatchers_start

from . import services
from .dispatcher import Dispatcher
from .testsends import testsends_deliver

log = logging.getLogger(__name__)


@shared_task
def dispatch_mailing(mailing_id: int) -> None:
    report = Dispatcher.from_settings(mailing_id).run()
    log.info(
        "mailing=%s dispatch done: sent=%s failed=%s retried=%s deferred=%s expired=%s",
        mailing_id,
        report.sent,
        report.failed,
        report.retried,
        report.deferred,
        report.expired,
    )
    if report.next_run_in is not None:
        dispatch_mailing.apply_async((mailing_id,), countdown=report.next_run_in)


@shared_task
def sweep_messages() -> None:
    """Re-drive what a crash, a lost task or a broker restart left behind."""
    now = timezone.now()
    released = services.messages_release_expired_leases(now=now)
    expired = services.messages_expire_pending(now=now)
    stalled = services.mailings_without_dispatcher(now=now)
    for mailing_id in stalled:
        log.warning("mailing=%s has due messages and no live dispatcher: restarting dispatch", mailing_id)
        services.mailing_heartbeat(mailing_id=mailing_id, now=now)
        dispatchers_start(mailing_id=mailing_id)
    if released or expired:
        log.info("sweep: %s leases released, %s messages expired", released, expired)


@shared_task
def send_test_messages(test_send_ids: list[int]) -> None:
    """Enqueued by name from mailings.services.mailing_test_send; the rows hold the outcomes."""
    testsends_deliver(test_send_ids=test_send_ids)
