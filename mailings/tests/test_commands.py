import stat
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from clients.models import Client
from mailings.models import Mailing
from messages_app.models import Message
from messages_app.tests.factories import MessageFactory

pytestmark = pytest.mark.django_db

User = get_user_model()


def run(*args) -> list[str]:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue().splitlines()


@pytest.fixture(autouse=True)
def fast_hasher(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def var_dir(settings, tmp_path):
    """The local state in a folder of the test's, with the tests' key rather than one generated there."""
    settings.VAR_DIR = tmp_path
    settings.STATIC_ROOT = tmp_path / "static"
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {}
    settings.SECRET_KEY_FROM_FILE = False
    return tmp_path


# --- issue_api_token ---------------------------------------------------------------------------


def test_issue_api_token_prints_a_token_that_authenticates_the_operator(operator):
    [key] = run("issue_api_token", "operator")

    assert key == Token.objects.get(user=operator).key
    user, _ = TokenAuthentication().authenticate_credentials(key)
    assert user == operator


def test_issue_api_token_prints_the_same_token_every_time(operator):
    assert run("issue_api_token", "operator") == run("issue_api_token", "operator")
    assert Token.objects.filter(user=operator).count() == 1


def test_issue_api_token_refuses_an_unknown_user_without_create_user():
    with pytest.raises(CommandError, match="--create-user"):
        run("issue_api_token", "nobody")

    assert not User.objects.filter(username="nobody").exists()


def test_issue_api_token_creates_an_operator_without_a_usable_password():
    [key] = run("issue_api_token", "robot", "--create-user", "--role", "operator")

    robot = User.objects.get(username="robot")
    assert not robot.has_usable_password()
    assert not robot.is_staff
    assert [group.name for group in robot.groups.all()] == ["operators"]
    assert Token.objects.get(user=robot).key == key
    assert run("issue_api_token", "robot", "--create-user") == [key]


def test_issue_api_token_creates_no_account_without_a_role():
    with pytest.raises(CommandError, match="--role"):
        run("issue_api_token", "robot", "--create-user")

    assert not User.objects.filter(username="robot").exists()


# --- ensure_demo_admin -------------------------------------------------------------------------


def parse_admin_line(line: str) -> str:
    """The password from 'Admin: <url>  user: admin  password: <pw>'."""
    prefix, password = line.rsplit("  password: ", 1)
    assert prefix == "Admin: http://127.0.0.1:8000/admin/  user: admin"
    return password


def test_ensure_demo_admin_creates_a_superuser_with_a_stored_private_password(var_dir):
    admin_line, token_line = run("ensure_demo_admin")

    password = parse_admin_line(admin_line)
    admin = User.objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.is_active
    assert admin.check_password(password)
    stored = var_dir / "demo_admin_password"
    assert stored.read_text().strip() == password
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert token_line == f"API token: {Token.objects.get(user=admin).key}"


def test_ensure_demo_admin_run_again_changes_nothing(var_dir):
    first = run("ensure_demo_admin")
    password_hash = User.objects.get(username="admin").password

    assert run("ensure_demo_admin") == first
    assert User.objects.filter(username="admin").count() == 1
    assert User.objects.get(username="admin").password == password_hash
    assert Token.objects.count() == 1


def test_ensure_demo_admin_reuses_the_stored_password_for_a_fresh_database(var_dir):
    (var_dir / "demo_admin_password").write_text("kept-from-last-time\n")

    admin_line, _ = run("ensure_demo_admin")

    assert parse_admin_line(admin_line) == "kept-from-last-time"
    assert User.objects.get(username="admin").check_password("kept-from-last-time")


def test_ensure_demo_admin_prints_a_password_that_works_for_an_existing_admin(var_dir):
    User.objects.create_superuser("admin", password="forgotten-long-ago")

    admin_line, _ = run("ensure_demo_admin")

    password = parse_admin_line(admin_line)
    assert User.objects.get(username="admin").check_password(password)
    assert (var_dir / "demo_admin_password").read_text().strip() == password


# --- seed_demo ---------------------------------------------------------------------------------


def test_seed_demo_creates_varied_clients_and_a_running_mailing_to_all(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        run("seed_demo")

    assert Client.objects.count() == 20
    assert set(Client.objects.values_list("tag", flat=True)) >= {"vip", "new"}
    assert Client.objects.values("operator_code").distinct().count() == 2
    assert Client.objects.values("timezone").distinct().count() > 1
    mailing = Mailing.objects.get()
    assert mailing.text == "Hello from the demo mailing"
    assert mailing.is_active(timezone.now())
    assert mailing.end_at - mailing.start_at == timedelta(hours=2)
    assert mailing.audience_description == "all clients"
    # Nothing launched by the command: the mailing's own save hook asks for its launch on commit.
    assert mailing.launched_at is None
    assert not mailing.messages.exists()
    assert len(callbacks) == 1


def test_seed_demo_twice_creates_no_duplicates():
    run("seed_demo")
    clients = set(Client.objects.values_list("pk", flat=True))

    output = run("seed_demo")

    assert set(Client.objects.values_list("pk", flat=True)) == clients
    assert Mailing.objects.count() == 1
    assert output[0] == "Demo clients: 0 created, 20 already there."
    assert output[1].startswith(f"Demo mailing {Mailing.objects.get().pk} is already running")


def test_seed_demo_says_the_demo_mailing_is_finished_once_every_message_is_sent():
    run("seed_demo")
    mailing = Mailing.objects.get()
    MessageFactory.create_batch(2, mailing=mailing, status=Message.Status.SENT)
    Mailing.objects.update(launched_at=timezone.now(), fanout_completed_at=timezone.now())

    output = run("seed_demo")

    assert Mailing.objects.count() == 1
    until = mailing.end_at.isoformat(timespec="minutes")
    assert output[1] == (
        f"Demo mailing {mailing.pk} is finished (its window lasts until {until}; "
        "seed_demo starts a new one after that)."
    )


def test_seed_demo_keeps_existing_clients_as_they_are():
    Client.objects.create(phone="79005550000", tag="custom", timezone="Asia/Tokyo")

    run("seed_demo")

    kept = Client.objects.get(phone="79005550000")
    assert (kept.tag, kept.timezone) == ("custom", "Asia/Tokyo")
    assert Client.objects.count() == 20


def test_seed_demo_starts_a_new_mailing_once_the_last_one_ended():
    run("seed_demo")

    with time_machine.travel(timezone.now() + timedelta(hours=3)):
        run("seed_demo")
        assert Mailing.objects.count() == 2
        assert Mailing.objects.filter(start_at__lte=timezone.now(), end_at__gt=timezone.now()).count() == 1


# --- demo_summary --------------------------------------------------------------------------------


def test_demo_summary_counts_the_demo_mailing_and_prints_the_login_on_the_given_address(var_dir):
    run("seed_demo")
    mailing = Mailing.objects.get()
    MessageFactory(mailing=mailing, status=Message.Status.SENT)
    MessageFactory(mailing=mailing, status=Message.Status.FAILED)

    lines = run(
        "demo_summary",
        "--base-url",
        "http://127.0.0.1:8001/",
        "--provider-stats-url",
        "http://127.0.0.1:8081/stats",
    )

    statistics = f"http://127.0.0.1:8001/api/v1/mailings/{mailing.pk}/statistics/"
    assert lines[0] == f"Demo mailing {mailing.pk}: 1 of 2 messages sent ({statistics})"
    assert "API docs: http://127.0.0.1:8001/docs/  (Authorize with: Token <API token>)" in lines
    assert "API root: http://127.0.0.1:8001/api/v1/" in lines
    assert "Fake provider's counts: http://127.0.0.1:8081/stats" in lines
    password = (var_dir / "demo_admin_password").read_text().strip()
    assert f"Admin: http://127.0.0.1:8001/admin/  user: admin  password: {password}" in lines
    assert lines[-1] == f"API token: {Token.objects.get(user__username='admin').key}"


def test_demo_summary_waits_no_longer_than_asked_for_messages_still_pending(var_dir):
    run("seed_demo")
    mailing = Mailing.objects.get()
    MessageFactory(mailing=mailing, status=Message.Status.PENDING)

    [demo_line, *_] = run("demo_summary", "--wait", "0")

    assert demo_line.startswith(f"Demo mailing {mailing.pk}: 0 of 1 messages sent")


def test_demo_summary_says_when_no_demo_mailing_runs(var_dir):
    [demo_line, *_] = run("demo_summary", "--wait", "0")

    assert demo_line == "No demo mailing is running (python manage.py seed_demo starts one)."


def test_setup_demo_makes_the_local_state_migrates_then_seeds_in_a_few_lines(var_dir):
    lines = run("setup_demo")

    assert (var_dir / "static").is_dir()
    # The tests' database is migrated already: the fresh clone's count is in test_make_run.
    assert lines == [
        "Database: up to date, no migration to apply.",
        "Demo clients: 20 created, 0 already there.",
        lines[-1],
    ]
    assert lines[-1].startswith(f"Demo mailing {Mailing.objects.get().pk} created")
