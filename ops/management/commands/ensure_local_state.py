from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from mailing_service.local_state import local_secret_key


def local_folders() -> list[Path]:
    """The folders the settings point at and nothing else makes: var/ (SQLite, beat's schedule),
    the embedded broker's, and where collected static files go (WhiteNoise looks there at start)."""
    folders = [Path(settings.VAR_DIR), Path(settings.STATIC_ROOT)]
    broker = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    folders += [Path(broker[name]) for name in ("data_folder_in", "data_folder_out") if name in broker]
    return folders


class Command(BaseCommand):
    help = (
        "For local runs: create var/ and the folders of the embedded defaults and, unless "
        "DJANGO_SECRET_KEY is set, generate the local secret key in var/secret_key. Safe to run again."
    )

    def handle(self, *args, **options):
        for folder in local_folders():
            folder.mkdir(parents=True, exist_ok=True)
        if settings.SECRET_KEY_FROM_FILE:
            # This process read no key if there was none yet: what it runs next may need one.
            settings.SECRET_KEY = local_secret_key(Path(settings.SECRET_KEY_FILE))
