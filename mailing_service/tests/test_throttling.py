"""Rate limits answer 429 with Retry-After, counted in the configured cache; the rates come from
settings (conftest turns them off for every other test)."""

import os
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests
import time_machine
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.request import Request

import conftest
from conftest import token_client
from mailing_service.throttling import FailedAuthThrottle

WRONG_TOKEN = "Token 0123456789abcdef0123456789abcdef01234567"


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("own_cache")]


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


def test_a_failure_count_gone_past_the_rate_still_blocks(settings, rf):
    """Requests that passed the check together each count their failure: the count can go past the
    rate, and the block must hold then too (a history longer than the rate once read as no block)."""
    rates(settings, failed_auth="5/min")
    request = Request(rf.get("/api/v1/clients/", REMOTE_ADDR="203.0.113.9"))

    with time_machine.travel(timezone.now(), tick=False):
        for _ in range(9):
            FailedAuthThrottle().record_failure(request)
        wait = FailedAuthThrottle().seconds_blocked(request)

    assert wait is not None and 0 < wait <= 60


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


@pytest.fixture
def redis_cache(settings, request):
    """The cache on the tests' Redis, as in production, under a key prefix of this test's own whose
    keys are removed afterwards. Without Redis the test skips, or fails under CI."""
    url = conftest.test_redis_url()
    if not conftest.redis_available():
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer at {url}")
        pytest.skip(f"Redis does not answer at {url}")
    prefix = f"test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    yield
    connection = redis.Redis.from_url(url)
    if keys := list(connection.scan_iter(f"{prefix}:*")):
        connection.delete(*keys)


@pytest.mark.usefixtures("redis_cache")
def test_wrong_tokens_sent_in_parallel_are_all_counted_and_then_refused(settings, live_server, operator):
    """Sent 8 at a time, each wrong token counts (Redis INCR): once the count reaches the rate every
    token from that address gets 429, however far past the rate the count has gone."""
    rates(settings, failed_auth="10/min")
    url = f"{live_server.url}/api/v1/clients/"

    def wrong_token(_) -> int:
        return requests.get(url, headers={"Authorization": WRONG_TOKEN}, timeout=30).status_code

    with time_machine.travel(timezone.now(), tick=False), ThreadPoolExecutor(max_workers=8) as pool:
        in_parallel = Counter(pool.map(wrong_token, range(48)))
        one_at_a_time = Counter(wrong_token(n) for n in range(30))
        right_token = requests.get(
            url, headers={"Authorization": f"Token {Token.objects.create(user=operator).key}"}, timeout=30
        ).status_code

    assert set(in_parallel) == {401, 429}
    # The 10 the rate allows, and at most the requests already past the check when the 10th failed.
    assert 10 <= in_parallel[401] <= 10 + 8
    assert one_at_a_time == {429: 30}
    assert right_token == 429
