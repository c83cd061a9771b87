"""Rate limits answer 429 with Retry-After, counted in the configured cache; the rates come from
settings (conftest turns them off for every other test)."""

import pytest
import time_machine
from django.utils import timezone

from conftest import token_client

pytestmark = pytest.mark.django_db

WRONG_TOKEN = "Token 0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def fresh_cache(settings, request):
    """A cache of this test's own, so that counts start at zero and leave nothing behind.

    Its own LOCATION: locmem caches of one location share their store, and on SQLite a rolled-back
    test's user id comes back in the next test, which would then find the earlier test's counts.
    """
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": request.node.nodeid,
        }
    }


def rates(settings, **scopes):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": scopes}


def test_reads_over_the_users_rate_get_429_with_retry_after(settings, api_client):
    rates(settings, user="3/min")

    statuses = [api_client.get("/api/v1/clients/").status_code for _ in range(4)]

    assert statuses == [200, 200, 200, 429]
    response = api_client.get("/api/v1/clients/")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert response.json()["detail"].startswith("Request was throttled.")


def test_the_users_rate_opens_again_after_its_window(settings, api_client):
    rates(settings, user="1/min")
    assert api_client.get("/api/v1/clients/").status_code == 200
    assert api_client.get("/api/v1/clients/").status_code == 429

    with time_machine.travel(timezone.now().timestamp() + 61):
        assert api_client.get("/api/v1/clients/").status_code == 200


def test_writes_have_a_tighter_rate_than_reads(settings, api_client):
    rates(settings, user="100/min", user_write="2/min")

    writes = [api_client.post("/api/v1/clients/", {"phone": f"7916000000{n}"}).status_code for n in range(3)]

    assert writes == [201, 201, 429]
    assert api_client.get("/api/v1/clients/").status_code == 200


def test_each_user_has_a_rate_of_its_own(settings, api_client, viewer_client):
    rates(settings, user="1/min")

    assert api_client.get("/api/v1/mailings/").status_code == 200
    assert viewer_client.get("/api/v1/mailings/").status_code == 200
    assert api_client.get("/api/v1/mailings/").status_code == 429


def test_one_address_is_limited_whoever_it_is(settings, operator, viewer):
    rates(settings, ip="2/min")
    as_operator, as_viewer = token_client(operator), token_client(viewer)

    assert [client.get("/api/v1/").status_code for client in (as_operator, as_viewer, as_operator)] == [
        200,
        200,
        429,
    ]


def test_the_address_behind_a_trusted_proxy_is_counted(settings, api_client):
    rates(settings, ip="1/min")
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}

    first = api_client.get("/api/v1/", HTTP_X_FORWARDED_FOR="203.0.113.1")
    other = api_client.get("/api/v1/", HTTP_X_FORWARDED_FOR="203.0.113.2")
    again = api_client.get("/api/v1/", HTTP_X_FORWARDED_FOR="203.0.113.1")

    assert [first.status_code, other.status_code, again.status_code] == [200, 200, 429]


def test_wrong_tokens_from_one_address_get_429_even_with_the_right_one_then(
    settings, anonymous_client, operator
):
    rates(settings, failed_auth="5/min")
    anonymous_client.credentials(HTTP_AUTHORIZATION=WRONG_TOKEN)

    statuses = [anonymous_client.get("/api/v1/clients/").status_code for _ in range(6)]

    assert statuses == [401] * 5 + [429]
    right = token_client(operator)
    assert right.get("/api/v1/clients/").status_code == 429
    with time_machine.travel(timezone.now().timestamp() + 61):
        assert right.get("/api/v1/clients/").status_code == 200


def test_right_tokens_count_no_failure(settings, api_client):
    rates(settings, failed_auth="1/min")

    assert {api_client.get("/api/v1/clients/").status_code for _ in range(5)} == {200}


def test_the_health_check_is_never_throttled(settings, anonymous_client):
    rates(settings, ip="1/min")

    assert {anonymous_client.get("/health/").status_code for _ in range(3)} == {200}


def test_an_action_scope_limits_that_action_only(settings, api_client):
    """The scopes test_send and client_import are used by actions that set throttle_scope."""
    from mailings.views import MailingViewSet

    rates(settings, test_send="1/min")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MailingViewSet, "throttle_scope", "test_send", raising=False)
        assert api_client.get("/api/v1/mailings/").status_code == 200
        assert api_client.get("/api/v1/mailings/").status_code == 429
    assert api_client.get("/api/v1/clients/").status_code == 200


def test_default_rates_declare_every_scope():
    from mailing_service import settings as configured  # the module: conftest turned the rates off

    assert {"user", "user_write", "ip", "failed_auth", "test_send", "client_import"} <= set(
        configured.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    )
