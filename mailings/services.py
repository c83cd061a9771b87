from typing import Any

from django.db import transaction

from .models import Mailing

# Its messages were created from these, so they are frozen once the mailing is launched.
FROZEN_AFTER_LAUNCH = frozenset({"text", "filter_operator_code", "filter_tag", "start_at"})
EDITABLE_FIELDS = FROZEN_AFTER_LAUNCH | {"end_at"}


class MailingLaunchedError(Exception):
    """An edit would change what a launched mailing's messages were made from."""

    def __init__(self, mailing: Mailing, fields: list[str]):
        self.mailing = mailing
        self.fields = fields
        super().__init__(
            f"Mailing {mailing.pk} was launched at {mailing.launched_at.isoformat()} and its messages "
            f"were created from {', '.join(fields)}, which can no longer change; only end_at can."
        )


def mailing_update(*, mailing: Mailing, data: dict[str, Any]) -> Mailing:
    """Applies validated field values to the mailing; refuses to change frozen fields once launched.

    Values equal to the stored ones are no change, so a full replacement that repeats them passes.
    Raises MailingLaunchedError.
    """
    unknown = set(data) - EDITABLE_FIELDS
    if unknown:
        raise ValueError(f"Not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        # Read under lock: the launcher may have started since the caller loaded the mailing.
        mailing = Mailing.objects.select_for_update().get(pk=mailing.pk)
        changed = {name: value for name, value in data.items() if getattr(mailing, name) != value}
        frozen = sorted(FROZEN_AFTER_LAUNCH.intersection(changed))
        if mailing.is_launched and frozen:
            raise MailingLaunchedError(mailing, frozen)
        if changed:
            for name, value in changed.items():
                setattr(mailing, name, value)
            # Only these columns: the fan-out bookkeeping belongs to the launcher.
            mailing.save(update_fields=[*changed, "updated_at"])
    return mailing
