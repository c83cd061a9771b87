"""The state a local run keeps under VAR_DIR: the folders of the embedded defaults (SQLite, broker,
static files) and the generated secret key. Importing settings only reads it; `manage.py
ensure_local_state` makes it (setup_demo, and so `make run`, runs that first)."""

import os
import tempfile
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

NO_SECRET_KEY = (
    "No secret key: set DJANGO_SECRET_KEY (production), or generate the local one in var/secret_key "
    "with `python manage.py ensure_local_state` (make run does)."
)


def read_secret_key(path: Path) -> str:
    """The local key, or "" while there is none: a process reads it, only ensure_local_state writes it."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def local_secret_key(path: Path) -> str:
    """A random key kept in var/, so local runs need no configuration; production sets its own
    (`check --deploy` warns while this file is in use: accounts.checks).

    Written 0600 to a temporary file and linked into place only when complete, so that a process
    starting at the same moment reads either no file (and links its own, which fails: it then reads
    the winner's) or the whole key, never a half-written one.
    """
    if not path.exists():
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
        try:
            with os.fdopen(descriptor, "w") as file:
                file.write(get_random_secret_key())
                file.flush()
                os.fsync(file.fileno())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(temporary)
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)  # earlier versions wrote it 0644
    return path.read_text().strip()


def require_secret_key() -> None:
    """Refuse to start a serving process without a key, rather than fail on its first signed value
    (a session, a CSRF token)."""
    from django.conf import settings

    try:
        settings.SECRET_KEY  # noqa: B018  (Django raises on an empty key when it is read)
    except ImproperlyConfigured:
        raise ImproperlyConfigured(NO_SECRET_KEY) from None
