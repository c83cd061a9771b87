import os

from celery import Celery
from celery.signals import setup_logging

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
