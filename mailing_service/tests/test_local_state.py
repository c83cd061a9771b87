"""Importing the settings creates nothing; `ensure_local_state` makes var/ and the local key; web and
worker refuse to start without a key (production sets DJANGO_SECRET_KEY)."""

import stat

import pytest

from conftest import run_python
from mailing_service.celery import refuse_to_start_without_a_secret_key
from mailing_service.local_state import NO_SECRET_KEY

FRESH_CLONE = {"DJANGO_SECRET_KEY": "", "CELERY_BROKER_URL": "filesystem://localhost/"}


def fresh_clone(tmp_path) -> dict[str, str]:
    """A fresh clone's defaults, with var/ in a folder of the test's."""
    return FRESH_CLONE | {"VAR_DIR": str(tmp_path / "var")}


def test_starting_django_creates_no_file(tmp_path):
    result = run_python("import django; django.setup()", **fresh_clone(tmp_path))

    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_ensure_local_state_makes_the_folders_and_a_private_key_that_the_web_then_reads(tmp_path):
    var = tmp_path / "var"
    create = "from django.core.management import call_command; call_command('ensure_local_state')"
    serve = "import mailing_service.wsgi; from django.conf import settings; print(settings.SECRET_KEY)"

    made = run_python(f"import django; django.setup(); {create}", **fresh_clone(tmp_path))
    served = run_python(serve, **fresh_clone(tmp_path))

    assert made.returncode == 0, made.stderr
    assert {path.name for path in var.iterdir()} == {"broker", "static", "secret_key"}
    assert stat.S_IMODE((var / "secret_key").stat().st_mode) == 0o600
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip() == (var / "secret_key").read_text().strip()


def test_the_web_refuses_to_start_without_a_key(tmp_path):
    result = run_python("import mailing_service.wsgi", **fresh_clone(tmp_path))

    assert result.returncode != 0
    assert NO_SECRET_KEY in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_worker_and_beat_refuse_to_start_without_a_key(settings):
    settings.SECRET_KEY = ""

    with pytest.raises(SystemExit, match="DJANGO_SECRET_KEY"):
        refuse_to_start_without_a_secret_key()
