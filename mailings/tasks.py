from celery import current_app, shared_task
from django.utils import timezone

from .models import Mailing

# The launch task creates the mailing's messages, so it is messages_app.tasks.launch_mailing; this
# app enqueues it by this name, which queued tasks and the task metrics' labels carry.
LAUNCH_MAILING = "mailings.tasks.launch_mailing"


def launch_mailing_enqueue(mailing_id: int) -> None:
    current_app.send_task(LAUNCH_MAILING, args=(mailing_id,))


@shared_task
def launch_due_mailings() -> None:
    """Beat's scanner: starts mailings whose start has come, and resumes a fan-out whose launcher died."""
    for mailing_id in Mailing.objects.due_for_launch(timezone.now()).values_list("id", flat=True):
        launch_mailing_enqueue(mailing_id)
