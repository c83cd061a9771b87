"""OpenID Connect login to the admin, through the whole redirect flow, against a provider on loopback."""

import importlib
from urllib.parse import urlsplit

import pytest
import requests
from django.contrib.auth.models import Group, Permission
from django.test import override_settings
from django.urls import clear_url_caches, reverse

import mailing_service.urls

from .oidc_provider import TinyOIDCProvider

pytestmark = pytest.mark.django_db

CLIENT_ID, CLIENT_SECRET = "mailing-console", "console-secret"


def reload_urls() -> None:
    """urls.py mounts /oidc/ only when OIDC_ENABLED: re-read it under the settings in force."""
    importlib.reload(mailing_service.urls)
    clear_url_caches()


@pytest.fixture
def oidc_provider():
    with TinyOIDCProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as running:
        yield running


@pytest.fixture
def oidc_on(oidc_provider):
    with override_settings(
        OIDC_ENABLED=True,
        AUTHENTICATION_BACKENDS=[
            "django.contrib.auth.backends.ModelBackend",
            "mailing_service.oidc.RoleMappingOIDCBackend",
        ],
        OIDC_RP_CLIENT_ID=CLIENT_ID,
        OIDC_RP_CLIENT_SECRET=CLIENT_SECRET,
        OIDC_ROLE_GROUPS={"mail-ops": "operators", "mail-readers": "viewers"},
        **oidc_provider.endpoints(),
    ):
        reload_urls()
        yield oidc_provider
    reload_urls()


@pytest.fixture
def roles():
    """The deployment's groups (accounts' data migration makes them); viewers may look at mailings,
    operators may also change them."""
    view = Permission.objects.get(codename="view_mailing")
    change = Permission.objects.get(codename="change_mailing")
    Group.objects.get(name="viewers").permissions.add(view)
    Group.objects.get(name="operators").permissions.add(view, change)


def log_in_through_the_provider(client, oidc_provider) -> str:
    """Follow the flow from the admin's login page: our redirect to the provider, its redirect
    back with a code, our callback (which calls its token, JWKS and userinfo endpoints). Returns
    where the callback sent the browser.
    """
    login_page = client.get(reverse("admin:login"), {"next": "/admin/"}).content.decode()
    start = reverse("oidc_authentication_init")
    assert f'href="{start}?next=/admin/"' in login_page

    to_provider = client.get(start, {"next": "/admin/"})
    assert to_provider.status_code == 302
    assert to_provider.url.startswith(f"{oidc_provider.url}/authorize?")
    back = requests.get(to_provider.url, allow_redirects=False, timeout=5)
    assert back.status_code == 302
    callback = urlsplit(back.headers["Location"])
    assert callback.path == reverse("oidc_authentication_callback")

    done = client.get(f"{callback.path}?{callback.query}")
    assert done.status_code == 302
    return done.url


def test_a_person_with_the_operator_role_logs_in_as_staff_in_the_operators_group(
    client, oidc_on, roles, django_user_model
):
    oidc_on.claims = {
        "sub": "u-1",
        "email": "olga@example.com",
        "preferred_username": "olga",
        "groups": ["mail-ops"],
    }

    assert log_in_through_the_provider(client, oidc_on) == "/admin/"

    user = django_user_model.objects.get(email="olga@example.com")
    assert (user.username, user.is_staff, user.is_superuser) == ("olga", True, False)
    assert [group.name for group in user.groups.all()] == ["operators"]
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("console:dashboard")).status_code == 200


def test_the_next_login_follows_a_role_changed_at_the_provider(
    client, oidc_on, roles, django_user_model, settings
):
    settings.OIDC_STAFF_GROUPS = ["operators", "viewers"]
    oidc_on.claims = {"sub": "u-2", "email": "ivan@example.com", "groups": ["mail-ops"]}
    log_in_through_the_provider(client, oidc_on)
    client.logout()

    oidc_on.claims = {"sub": "u-2", "email": "ivan@example.com", "groups": ["mail-readers", "unrelated"]}
    log_in_through_the_provider(client, oidc_on)

    user = django_user_model.objects.get(email="ivan@example.com")
    assert [group.name for group in user.groups.all()] == ["viewers"]
    assert client.get(reverse("admin:mailings_mailing_changelist")).status_code == 200
    assert client.get(reverse("admin:mailings_mailing_add")).status_code == 403


def test_a_person_without_a_mapped_role_is_refused(client, oidc_on, roles, django_user_model):
    oidc_on.claims = {"sub": "u-3", "email": "guest@example.com", "groups": ["marketing"]}

    landing = log_in_through_the_provider(client, oidc_on)

    assert landing == "/"  # the library's failure URL
    assert not django_user_model.objects.filter(email="guest@example.com").exists()
    assert client.get("/admin/").status_code == 302  # still sent to the login page


def test_a_forged_code_logs_nobody_in(client, oidc_on, roles):
    client.get(reverse("oidc_authentication_init"))
    state = client.session["oidc_states"]
    response = client.get(
        reverse("oidc_authentication_callback"), {"code": "forged", "state": next(iter(state))}
    )

    assert response.status_code == 302 and response.url == "/"
    assert "_auth_user_id" not in client.session


def test_password_login_is_the_default_and_single_sign_on_is_off(client, admin_user):
    login_page = client.get(reverse("admin:login")).content.decode()

    assert "single sign-on" not in login_page
    assert client.get("/oidc/authenticate/").status_code == 404
    # Through the login form: the lockout backend (axes) needs the request.
    response = client.post(reverse("admin:login"), {"username": "admin", "password": "password"})
    assert response.status_code == 302 and "_auth_user_id" in client.session


def logged_in_user(client, django_user_model):
    return django_user_model.objects.get(pk=client.session["_auth_user_id"])


def test_only_the_roles_that_use_the_admin_are_made_staff(client, oidc_on, roles, django_user_model):
    oidc_on.claims = {"sub": "u-4", "email": "vera@example.com", "groups": ["mail-readers"]}

    log_in_through_the_provider(client, oidc_on)

    viewer = logged_in_user(client, django_user_model)
    assert [group.name for group in viewer.groups.all()] == ["viewers"]
    assert not viewer.is_staff
    assert client.get(reverse("admin:clients_client_changelist")).status_code == 302  # to the login


def test_an_unverified_email_does_not_log_in_as_the_account_with_that_email(
    client, oidc_on, roles, django_user_model
):
    local = django_user_model.objects.create_user("olga", email="olga@example.com", password="pw-local-1")
    oidc_on.claims = {
        "sub": "u-5",
        "email": "olga@example.com",
        "preferred_username": "olga",
        "groups": ["mail-ops"],
    }

    log_in_through_the_provider(client, oidc_on)

    newcomer = logged_in_user(client, django_user_model)
    assert newcomer != local
    assert newcomer.username == "sso-u-5"  # the local account keeps its name
    local.refresh_from_db()
    assert not local.groups.exists() and not local.is_staff


def test_a_verified_email_links_the_account_and_later_logins_match_the_subject(
    client, oidc_on, roles, django_user_model
):
    local = django_user_model.objects.create_user("olga", email="olga@example.com")
    oidc_on.claims = {
        "sub": "u-6",
        "email": "olga@example.com",
        "email_verified": True,
        "groups": ["mail-ops"],
    }
    log_in_through_the_provider(client, oidc_on)
    assert logged_in_user(client, django_user_model) == local
    client.logout()

    # The e-mail changes at the provider; a local account holds the new one.
    django_user_model.objects.create_user("other", email="olga.new@example.com")
    oidc_on.claims = {**oidc_on.claims, "email": "olga.new@example.com"}
    log_in_through_the_provider(client, oidc_on)

    assert logged_in_user(client, django_user_model) == local


def test_a_superuser_is_never_logged_in_through_single_sign_on(client, oidc_on, roles, admin_user):
    admin_user.email = "root@example.com"
    admin_user.save()
    oidc_on.claims = {
        "sub": "u-7",
        "email": "root@example.com",
        "email_verified": True,
        "groups": ["mail-ops"],
    }

    landing = log_in_through_the_provider(client, oidc_on)

    assert landing == "/"  # the library's failure URL
    assert "_auth_user_id" not in client.session
    assert not admin_user.groups.exists()


def test_a_userinfo_answer_about_another_subject_logs_nobody_in(
    client, oidc_on, roles, django_user_model, monkeypatch
):
    oidc_on.claims = {"sub": "u-8", "email": "olga@example.com", "groups": ["mail-ops"]}
    userinfo = oidc_on.userinfo
    monkeypatch.setattr(
        oidc_on,
        "userinfo",
        lambda authorization: (*userinfo(authorization)[:2], {**oidc_on.claims, "sub": "u-1"}),
    )

    assert log_in_through_the_provider(client, oidc_on) == "/"
    assert "_auth_user_id" not in client.session
    assert not django_user_model.objects.filter(email="olga@example.com").exists()
