"""API tokens expire and can be revoked; the admin never shows a key in clear."""

from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from rest_framework.authtoken.models import Token

from conftest import token_client

pytestmark = pytest.mark.django_db


def issue(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("issue_api_token", *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


def authorized(key: str):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_a_token_stops_working_after_the_default_lifetime(operator, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 30
    client = token_client(operator)

    with time_machine.travel(timezone.now() + timedelta(days=29)):
        assert client.get("/api/v1/clients/").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=31)):
        response = client.get("/api/v1/clients/")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_lifetime_zero_means_tokens_do_not_expire(operator, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 0
    client = token_client(operator)

    with time_machine.travel(timezone.now() + timedelta(days=3650)):
        assert client.get("/api/v1/clients/").status_code == 200


def test_expires_in_gives_a_token_its_own_expiry(operator):
    key = issue("operator", "--expires-in", "2")

    with time_machine.travel(timezone.now() + timedelta(days=1)):
        assert authorized(key).get("/api/v1/clients/").status_code == 200
    with time_machine.travel(timezone.now() + timedelta(days=2, minutes=1)):
        assert authorized(key).get("/api/v1/clients/").status_code == 401


def test_an_expired_token_is_replaced_by_a_new_one(operator, settings):
    settings.API_TOKEN_LIFETIME_DAYS = 1
    old = issue("operator")

    with time_machine.travel(timezone.now() + timedelta(days=2)):
        new = issue("operator")
        assert new != old
        assert authorized(new).get("/api/v1/clients/").status_code == 200
    assert list(Token.objects.values_list("key", flat=True)) == [new]


def test_a_revoked_token_is_refused(operator):
    key = issue("operator")

    issue("operator", "--revoke")

    assert authorized(key).get("/api/v1/clients/").status_code == 401
    assert not Token.objects.exists()


@pytest.mark.parametrize("role, group, staff", [("viewer", "viewers", False), ("admin", "admins", True)])
def test_a_role_replaces_the_previous_one(operator, role, group, staff):
    issue("operator", "--role", role)

    operator.refresh_from_db()
    assert [g.name for g in operator.groups.all()] == [group]
    assert operator.is_staff is staff


def test_a_viewer_token_from_the_command_reads_but_does_not_write():
    key = issue("watcher", "--create-user", "--role", "viewer")

    assert authorized(key).get("/api/v1/mailings/").status_code == 200
    assert authorized(key).post("/api/v1/clients/", {"phone": "79160000000"}).status_code == 403


def test_the_admin_shows_token_keys_nowhere_in_clear(admin_client, operator):
    token = Token.objects.create(user=operator)
    pages = ["/admin/auth/user/", f"/admin/auth/user/{operator.pk}/change/", "/admin/authtoken/tokenproxy/"]

    answers = [admin_client.get(page) for page in pages]

    assert [answer.status_code for answer in answers] == [200, 200, 404]
    assert all(token.key not in answer.content.decode() for answer in answers)
    assert f"{token.key[:4]}…" in answers[0].content.decode()


def test_the_admin_revokes_tokens_of_selected_users(admin_client, operator):
    Token.objects.create(user=operator)

    response = admin_client.post(
        "/admin/auth/user/", {"action": "revoke_api_tokens", "_selected_action": [operator.pk]}
    )

    assert response.status_code == 302
    assert not Token.objects.exists()
