"""The one post_save hook the design asks for: a mailing saved inside its window starts at once
(a draft never does).

Mailings with a future start are picked up by the beat scanner (mailings.tasks.launch_due_mailings).
"""

from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

from ops.enqueue import enqueue_on_commit

from .models import Mailing


@receiver(post_save, sender=Mailing, dispatch_uid="mailing_launch_on_save")
def launch_active_mailing(sender, instance: Mailing, raw: bool = False, **kwargs):
    if (
        raw
        or instance.draft
        or instance.fanout_completed_at is not None
        or not instance.is_active(timezone.now())
    ):
        return
    from .tasks import LAUNCH_MAILING

    enqueue_on_commit(
        LAUNCH_MAILING,
        (instance.pk,),
        instead=f"mailing {instance.pk} is launched by beat's scanner within MAILING_SCAN_INTERVAL",
    )
