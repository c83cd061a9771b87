import gc
import os

from celery import Celery
from celery.signals import setup_logging, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mailing_service.settings")

app = Celery("mailing_service")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """Worker and beat log through settings.LOGGING (ids as fields, phones masked, JSON when asked)
    instead of the handlers Celery would install on the root logger."""
    from django.conf import settings

    from ops.logging import configure_worker

    configure_worker(settings.LOGGING)


@worker_process_init.connect
def tune_garbage_collector(**kwargs) -> None:
    """A pool process lives long and its sender allocates hundreds of objects per request: with
    Python's defaults the cyclic collector ran every 700 of them, and its full collections walked
    every object Django and the app made at startup: over a quarter of the process's time during a
    send. What exists now is frozen (never walked again), and young collections run every
    WORKER_GC_THRESHOLD allocations."""
    from django.conf import settings

    gc.freeze()
    gc.set_threshold(settings.WORKER_GC_THRESHOLD, *gc.get_threshold()[1:])
