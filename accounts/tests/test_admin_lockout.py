"""Wrong admin passwords lock the (account, address) pair out (django-axes) before any more password
hashing; the address is the client's, behind the trusted proxies."""

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("staff", password="right-password-1", is_staff=True)


@pytest.fixture
def other_staff(django_user_model):
    return django_user_model.objects.create_user("other", password="other-password-1", is_staff=True)


@pytest.fixture
def behind_a_proxy(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}


def log_in(client, password: str, username: str = "staff", **headers):
    return client.post(LOGIN, {"username": username, "password": password}, **headers)


def through_the_proxy(address: str) -> dict:
    """What the proxy passes on: its own connection (loopback) and the address it saw last."""
    return {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": address}


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


def test_behind_a_proxy_the_clients_address_is_locked_out_not_the_proxys(
    client, staff, settings, behind_a_proxy
):
    attacker = through_the_proxy("198.51.100.7")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong", **attacker)

    administrator = log_in(Client(), "right-password-1", **through_the_proxy("203.0.113.50"))
    # What the attacker writes in front of the proxy's entry changes nothing.
    spoofed = log_in(Client(), "right-password-1", **through_the_proxy("203.0.113.50, 198.51.100.7"))

    assert administrator.status_code == 302
    assert spoofed.status_code == 429
    assert log_in(client, "right-password-1", **attacker).status_code == 429


def test_the_lockout_is_per_account(client, staff, other_staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(client, "wrong")

    assert log_in(client, "other-password-1", username="other").status_code == 302
    assert log_in(Client(), "right-password-1").status_code == 429


def test_a_login_clears_the_failures_of_its_own_account_only(client, staff, other_staff, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(Client(), "other-password-1", username="other").status_code == 302

    assert log_in(client, "wrong").status_code == 429
