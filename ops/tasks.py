import logging

from celery import shared_task
from django.utils import timezone

from .idempotency import idempotency_purge

log = logging.getLogger(__name__)


@shared_task
def purge_idempotency_keys() -> None:
    """Beat, hourly: idempotency keys past IDEMPOTENCY_KEY_HOURS go."""
    if deleted := idempotency_purge(now=timezone.now()):
        log.info("idempotency keys purged: %s", deleted)
