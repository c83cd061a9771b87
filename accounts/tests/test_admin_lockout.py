"""Wrong admin passwords lock the address out (django-axes) before any more password hashing."""

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password="right-password-1", is_staff=True)


def log_in(client, password: str):
    return client.post(LOGIN, {"username": "staff", "password": password})


def test_the_right_password_logs_in(client, staff):
    assert log_in(client, "right-password-1").status_code == 302


def test_after_the_limit_even_the_right_password_is_refused_until_the_cool_off(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200  # the form again, with its error
    assert log_in(client, "wrong").status_code == 429  # the last failure allowed locks the address

    locked = log_in(client, "right-password-1")

    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    with time_machine.travel(timezone.now() + settings.AXES_COOLOFF_TIME + timedelta(seconds=1)):
        assert log_in(client, "right-password-1").status_code == 302


def test_the_lockout_is_per_address(client, staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong")

    other = client.post(
        LOGIN, {"username": "staff", "password": "right-password-1"}, REMOTE_ADDR="198.51.100.7"
    )

    assert other.status_code == 302
