"""The one post_save hook the design asks for: a mailing saved inside its window starts at once
(a draft never does).

Mailings with a future start are picked up by the beat scanner (mailings.tasks.launch_due_mailings).
"""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone

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
    from .tasks import launch_mailing_enqueue

    transaction.on_commit(partial(launch_mailing_enqueue, instance.pk))
