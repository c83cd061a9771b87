from celery import shared_task
from django.utils import timezone

from ops.logging import log_context

from .models import Mailing
from .services import mailing_launch


@shared_task
def launch_mailing(mailing_id: int) -> None:
    with log_context(mailing_id=mailing_id):
        mailing_launch(mailing_id=mailing_id)


@shared_task
def launch_due_mailings() -> None:
    """Beat's scanner: starts mailings whose start has come, and resumes a fan-out whose launcher died."""
    for mailing_id in Mailing.objects.due_for_launch(timezone.now()).values_list("id", flat=True):
        launch_mailing.delay(mailing_id)
