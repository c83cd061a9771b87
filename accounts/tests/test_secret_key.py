import stat
from concurrent.futures import ThreadPoolExecutor

from django.core.management import call_command
from django.core.management.base import SystemCheckError

from mailing_service.local_state import local_secret_key


def test_the_local_key_file_is_private(tmp_path):
    key = local_secret_key(tmp_path / "secret_key")

    assert len(key) >= 50
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert local_secret_key(tmp_path / "secret_key") == key


def test_processes_starting_together_all_read_one_whole_key(tmp_path):
    path = tmp_path / "secret_key"

    with ThreadPoolExecutor(16) as pool:
        keys = set(pool.map(lambda _: local_secret_key(path), range(64)))

    assert len(keys) == 1 and len(keys.pop()) >= 50
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]  # no temporary file left


def test_a_key_file_left_readable_by_others_is_made_private(tmp_path):
    path = tmp_path / "secret_key"
    path.write_text("k" * 50)
    path.chmod(0o644)

    assert local_secret_key(path) == "k" * 50
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_deploy_check_warns_while_the_key_comes_from_the_file(settings):
    settings.SECRET_KEY_FROM_FILE = True

    try:
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "security")
    except SystemCheckError as error:
        assert "accounts.W001" in str(error)
    else:
        raise AssertionError("no warning")
