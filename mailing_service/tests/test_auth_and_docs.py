import re
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

# Answer anyone: the API documentation, the health checks and the site's icon (a redirect to a static
# file); /metrics has a token of its own (see ops/tests/test_metrics.py), providers' receipts their
# provider's signature (messages_app/tests/test_receipts.py), subscribers' replies too
# (test_replies.py). Everything else needs credentials.
OPEN_PATHS = {
    "/api/v1/schema/",
    "/docs/",
    "/redoc/",
    "/health/",
    "/health/live",
    "/health/ready",
    "/metrics",
    "/favicon.ico",
    "/receipts/1/",
    "/replies/1/",
}
METHODS = ["get", "post", "put", "patch", "delete"]


def routes(patterns=None, prefix: str = ""):
    """Every URL the project serves outside the admin, with "1" for each path parameter."""
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            if pattern.app_name == "admin":
                continue  # the admin has its own login page; see test_admin_requires_a_login
            yield from routes(pattern.url_patterns, prefix + _path_of(pattern))
        elif isinstance(pattern, URLPattern) and not (prefix + _path_of(pattern)).startswith("admin/"):
            yield "/" + prefix + _path_of(pattern)  # the console's dashboard is an admin page too


def _path_of(pattern) -> str:
    text = str(pattern.pattern)
    if hasattr(pattern.pattern, "regex") and text.startswith("^"):
        text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text).lstrip("^").rstrip("$")
        return text.replace("\\", "")
    return re.sub(r"<[^>]+>", "1", text)


PROTECTED_PATHS = sorted(set(routes()) - OPEN_PATHS)


def test_the_route_list_covers_the_api():
    assert set(routes()) >= OPEN_PATHS
    assert {
        "/api/v1/clients/",
        "/api/v1/clients/1/",
        "/api/v1/mailings/",
        "/api/v1/mailings/1/",
        "/api/v1/mailings/statistics/",
        "/api/v1/mailings/1/statistics/",
        "/api/v1/messages/",
        "/api/v1/messages/1/",
    } <= set(PROTECTED_PATHS)


@pytest.mark.parametrize("path", PROTECTED_PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_every_api_route_needs_credentials(anonymous_client, path, method):
    response = getattr(anonymous_client, method)(path, {})

    assert response.status_code == 401, (method, path)
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", PROTECTED_PATHS)
def test_a_wrong_token_is_refused(anonymous_client, path):
    anonymous_client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    assert anonymous_client.get(path).status_code == 401


def test_a_token_opens_the_api(api_client):
    assert api_client.get("/api/v1/clients/").status_code == 200


def test_a_logged_in_session_opens_the_api(anonymous_client, operator):
    anonymous_client.force_login(operator)

    assert anonymous_client.get("/api/v1/clients/").status_code == 200


def test_a_session_without_its_csrf_token_cannot_write(operator):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(operator)

    response = browser.post("/api/v1/clients/", {"phone": "79161234567"})

    assert response.status_code == 403


def test_an_inactive_users_token_is_refused(anonymous_client, operator):
    token = Token.objects.create(user=operator)
    operator.is_active = False
    operator.save()
    anonymous_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    assert anonymous_client.get("/api/v1/clients/").status_code == 401


@pytest.mark.parametrize("path", ["/docs/", "/redoc/"])
def test_documentation_pages_are_open(anonymous_client, path):
    response = anonymous_client.get(path)

    assert response.status_code == 200
    assert b"/api/v1/schema/" in response.content


def test_documentation_without_trailing_slash_redirects(anonymous_client):
    response = anonymous_client.get("/docs")

    assert response.status_code == 301
    assert response["Location"] == "/docs/"


def test_schema_is_open_and_lists_the_api(anonymous_client):
    response = anonymous_client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/mailings/{id}/statistics/" in paths
    assert all(
        operation.get("summary")
        for path in paths.values()
        for method, operation in path.items()
        if method in METHODS
    )


def test_schema_validates_without_warnings(tmp_path):
    """The same check as `manage.py spectacular --validate --fail-on-warn`."""
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))

    assert (tmp_path / "schema.yml").read_text().startswith("openapi:")


def test_health_is_ok_without_credentials(anonymous_client):
    response = anonymous_client.get("/health/")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_health_is_unavailable_when_the_database_is(anonymous_client):
    database = mock.MagicMock()
    database.cursor.side_effect = OperationalError("connection refused")

    with mock.patch("ops.views.connection", database):
        response = anonymous_client.get("/health/")

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


def test_admin_requires_a_login(anonymous_client):
    response = anonymous_client.get("/admin/")

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
