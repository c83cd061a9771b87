import gc
import os

from celery import Celery
from celery.signals import beat_init, setup_logging, worker_init, worker_process_init
from django.core.exceptions import ImproperlyConfigured

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


@worker_init.connect
@beat_init.connect
def refuse_to_start_without_a_secret_key(**kwargs) -> None:
    """Like the web (wsgi.py): production sets DJANGO_SECRET_KEY, a local run generates its key first.
    SystemExit, because Celery logs a signal handler's exception and carries on."""
    from mailing_service.local_state import require_secret_key

    try:
        require_secret_key()
    except ImproperlyConfigured as error:
        raise SystemExit(str(error)) from error


@worker_process_init.connect
def tune_garbage_collector(**kwargs) -> None:
    """A pool process lives long, and its sender makes and drops hundreds of objects per request.
    With Python's defaults the cyclic collector ran each time 700 more containers were alive than
    at the last run, and its full collections walked every object Django and the app had made at
    startup: much of the process's time during a send, hidden in whatever line allocated. The
    sender's libraries are loaded first, then all that exists is frozen: never walked again (nor
    freed, garbage among it included, once), and young collections wait for WORKER_GC_THRESHOLD
    more containers."""
    from django.conf import settings

    if settings.SENDER_ENABLED:
        import messages_app.sending.sender  # noqa: F401  (aiohttp and uvloop, frozen with the rest)

    gc.freeze()
    gc.set_threshold(settings.WORKER_GC_THRESHOLD, *gc.get_threshold()[1:])
