"""The fake provider over real HTTP: one server process for the module, reset before each test."""

import json
import socket
import time

import pytest
import requests

from fake_provider.behaviour import Config, RateLimit
from fake_provider.client import FakeProviderProcess
from harness.waiting import wait_until

TOKEN = "test-token"
PHONE = 79001234567
DEFAULTS = {
    "token": TOKEN,
    "latency": 0.0,
    "latency_jitter": 0.0,
    "error_rate": 0.0,
    "garbage_rate": 0.0,
    "hang_rate": 0.0,
    "reject_rate": 0.0,
    "hang_seconds": 3600.0,
    "rate_limit": 0.0,
    "rate_limit_burst": 0.0,
    "retry_after": 0.0,
    "receipt_undelivered_rate": 0.0,
    "receipt_lost_rate": 0.0,
    "receipt_duplicate_rate": 0.0,
    "receipt_reorder_rate": 0.0,
    "receipt_delay": 0.0,
    "receipt_delay_jitter": 0.0,
}


@pytest.fixture(scope="module")
def server():
    with FakeProviderProcess(TOKEN) as fake:
        yield fake.url, fake.control


@pytest.fixture
def send_url(server):
    return server[0]


@pytest.fixture
def control(server):
    control = server[1]
    control.outage("none")
    control.configure(**DEFAULTS)
    control.reset()
    return control


def send(send_url, msg_id, body=None, token=TOKEN, timeout=5.0, session=requests):
    if body is None:
        body = {"id": msg_id, "phone": PHONE, "text": "hello"}
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return session.post(f"{send_url}/send/{msg_id}", json=body, headers=headers, timeout=timeout)


def wait_for_no_request_in_flight(control):
    wait_until(
        lambda: control.stats()["in_flight"] == 0, timeout=3, interval=0.02, message="no request in flight"
    )


def test_valid_send_is_accepted_and_recorded_with_its_time(send_url, control):
    before = time.time()

    response = send(send_url, 42)

    assert response.status_code == 200
    assert response.json() == {"code": 0, "message": "OK"}
    stats = control.stats()
    assert stats["requests_total"] == 1
    assert stats["accepted_total"] == 1
    assert stats["unique_accepted"] == 1
    assert stats["outcomes"]["ok"] == 1
    [(msg_id, accepted_at)] = control.accepted()
    assert msg_id == 42
    assert before <= accepted_at <= time.time()
    assert stats["first_accept_at"] == stats["last_accept_at"] == accepted_at


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_missing_or_wrong_token_is_unauthorized_and_not_recorded(send_url, control, token):
    response = send(send_url, 1, token=token)

    assert response.status_code == 401
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["unauthorized"] == 1


def test_a_token_without_bearer_is_unauthorized(send_url, control):
    response = requests.post(
        f"{send_url}/send/1",
        json={"id": 1, "phone": PHONE, "text": "hi"},
        headers={"Authorization": TOKEN},
        timeout=5,
    )

    assert response.status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        {"phone": PHONE, "text": "hi"},
        {"id": 7, "text": "hi"},
        {"id": 7, "phone": PHONE},
        {"id": 8, "phone": PHONE, "text": "hi"},
        {"id": "7", "phone": PHONE, "text": "hi"},
        {"id": 7, "phone": 7900123456, "text": "hi"},
        {"id": 7, "phone": 790012345678, "text": "hi"},
        {"id": 7, "phone": 89001234567, "text": "hi"},
        {"id": 7, "phone": "79001234567", "text": "hi"},
        {"id": 7, "phone": True, "text": "hi"},
        {"id": 7, "phone": PHONE, "text": 5},
        [7, PHONE, "hi"],
    ],
    ids=[
        "no id",
        "no phone",
        "no text",
        "id differs from msgId",
        "id is a string",
        "phone of 10 digits",
        "phone of 12 digits",
        "phone starting with 8",
        "phone is a string",
        "phone is a boolean",
        "text is not a string",
        "body is not an object",
    ],
)
def test_invalid_body_is_a_bad_request_and_not_recorded(send_url, control, body):
    response = send(send_url, 7, body=body)

    assert response.status_code == 400
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["bad_request"] == 1


def test_body_that_is_not_json_is_a_bad_request(send_url, control):
    response = requests.post(
        f"{send_url}/send/7", data=b"{not json", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5
    )

    assert response.status_code == 400


@pytest.mark.parametrize("path", ["/send/", "/send/7/extra", "/sends/7", "/other"])
def test_a_send_port_path_that_is_not_a_send_is_not_found_and_not_recorded(send_url, control, path):
    response = requests.post(f"{send_url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)

    assert response.status_code == 404
    assert control.stats()["requests_total"] == 0


def test_a_send_and_the_health_check_take_only_their_methods(send_url, control):
    wrong_method = requests.get(f"{send_url}/send/7", timeout=5)
    health = requests.get(send_url.removesuffix("/v1") + "/health", timeout=5)
    posted_health = requests.post(send_url.removesuffix("/v1") + "/health", timeout=5)

    assert (wrong_method.status_code, wrong_method.headers["Allow"]) == (405, "POST")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert posted_health.status_code == 405
    assert control.stats()["requests_total"] == 0


def test_a_send_that_expects_100_continue_gets_it_before_its_body(send_url, control):
    body = json.dumps({"id": 7, "phone": PHONE, "text": "hello"}).encode()
    port = int(send_url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            b"POST /v1/send/7 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
            % (TOKEN.encode(), len(body))
        )
        assert connection.recv(1024).startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(body)
        answer = connection.recv(4096)

    assert answer.startswith(b"HTTP/1.1 200")
    assert control.stats()["accepted_total"] == 1


def test_error_rate_one_answers_5xx_and_records_nothing_accepted(send_url, control):
    control.configure(error_rate=1.0)

    statuses = {send(send_url, msg_id).status_code for msg_id in range(4)}

    assert statuses == {500, 503}
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["error_5xx"] == 4


def test_garbage_rate_one_answers_200_with_bodies_that_are_not_json_or_lack_a_code(send_url, control):
    control.configure(garbage_rate=1.0)

    responses = [send(send_url, msg_id) for msg_id in range(2)]

    assert [response.status_code for response in responses] == [200, 200]
    with pytest.raises(ValueError):
        json.loads(responses[0].content)
    assert "code" not in responses[1].json()
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["garbage"] == 2


def test_reject_rate_one_answers_a_nonzero_code_not_recorded_as_accepted(send_url, control):
    control.configure(reject_rate=1.0)

    response = send(send_url, 3)

    assert response.status_code == 200
    assert response.json()["code"] != 0
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["rejected"] == 1


def test_duplicates_are_counted_and_every_acceptance_listed(send_url, control):
    for msg_id in (5, 5, 6):
        assert send(send_url, msg_id).json()["code"] == 0

    stats = control.stats()
    assert stats["accepted_total"] == 3
    assert stats["unique_accepted"] == 2
    assert stats["duplicates"] == 1
    assert [msg_id for msg_id, _ in control.accepted()] == [5, 5, 6]


def test_client_giving_up_during_latency_is_not_recorded_as_accepted(send_url, control):
    control.configure(latency=0.5)

    with pytest.raises(requests.Timeout):
        send(send_url, 9, timeout=0.1)

    wait_for_no_request_in_flight(control)
    time.sleep(0.5)  # past the latency: the send would have been answered by now
    stats = control.stats()
    assert stats["accepted_total"] == 0
    assert stats["outcomes"]["abandoned"] == 1


def test_client_leaving_in_the_middle_of_its_body_is_counted_as_abandoned(send_url, control):
    host, port = send_url.removeprefix("http://").removesuffix("/v1").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            b"POST /v1/send/1 HTTP/1.1\r\nHost: fake\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKEN.encode() + b'\r\nContent-Length: 100\r\n\r\n{"id": 1'
        )
        wait_until(
            lambda: control.stats()["in_flight"] == 1,
            timeout=3,
            interval=0.02,
            message="one request in flight",
        )

    wait_for_no_request_in_flight(control)
    stats = control.stats()
    assert stats["outcomes"]["abandoned"] == stats["requests_total"] == 1
    assert stats["accepted_total"] == 0


def test_every_request_ends_in_exactly_one_outcome(send_url, control):
    send(send_url, 1)
    send(send_url, 2, token=None)
    send(send_url, 3, body={})
    control.configure(reject_rate=1.0)
    send(send_url, 4)
    control.configure(rate_limit=0.1, rate_limit_burst=1)
    send(send_url, 5)
    send(send_url, 6)

    stats = control.stats()
    assert sum(stats["outcomes"].values()) == stats["requests_total"] == 6
    assert stats["outcomes"]["throttled"] == 1


def test_latency_delays_the_answer(send_url, control):
    control.configure(latency=0.2, latency_jitter=0.05)

    started = time.monotonic()
    response = send(send_url, 1)

    assert response.status_code == 200
    assert 0.15 <= time.monotonic() - started < 1.0


def test_a_hang_lasts_until_the_client_gives_up(send_url, control):
    control.configure(hang_rate=1.0)

    with pytest.raises(requests.Timeout):
        send(send_url, 4, timeout=0.3)

    # The server notices the disconnect and drops the hanging request.
    wait_for_no_request_in_flight(control)
    stats = control.stats()
    assert stats["outcomes"]["hang"] == 1
    assert stats["accepted_total"] == 0


def test_refuse_outage_refuses_connections_then_works_again(send_url, control):
    session = requests.Session()
    assert send(send_url, 1, session=session).status_code == 200  # a kept-alive connection

    control.outage("refuse", 1)
    started = time.monotonic()

    with pytest.raises(requests.ConnectionError):
        send(send_url, 2, session=session)
    with pytest.raises(requests.ConnectionError):
        send(send_url, 3)
    assert control.config()["outage"]["mode"] == "refuse"  # control API still up

    wait_until(lambda: _answers(send_url), timeout=3, interval=0.02, message="the send port to answer")
    assert time.monotonic() - started >= 0.9
    assert send(send_url, 4, session=session).status_code == 200
    assert [msg_id for msg_id, _ in control.accepted()] == [1, 4]
    assert control.config()["outage"] is None


def _answers(send_url):
    try:
        requests.get(send_url.removesuffix("/v1") + "/health", timeout=1)
    except requests.ConnectionError:
        return False
    return True


def test_503_outage_answers_503_to_every_send_for_its_duration(send_url, control):
    control.outage("503", 0.5)

    assert [send(send_url, msg_id).status_code for msg_id in range(3)] == [503, 503, 503]
    time.sleep(0.6)
    assert send(send_url, 10).status_code == 200
    assert [msg_id for msg_id, _ in control.accepted()] == [10]


def test_a_new_outage_replaces_the_current_one(send_url, control):
    control.outage("refuse", 60)

    control.outage("503", 0.3)

    assert send(send_url, 1).status_code == 503
    wait_until(
        lambda: send(send_url, 2).status_code == 200, timeout=2, interval=0.02, message="a 200 after the 503s"
    )
    assert control.config()["outage"] is None


def test_an_outage_needs_a_known_mode_and_a_duration(control):
    for mode, seconds in (("refuse", 0), ("503", -1), ("down", 5)):
        with pytest.raises(requests.HTTPError) as error:
            control.outage(mode, seconds)
        assert error.value.response.status_code == 400
    assert control.config()["outage"] is None


def test_outage_none_ends_an_outage_early(send_url, control):
    control.outage("refuse", 60)

    control.outage("none")

    assert send(send_url, 1).status_code == 200


def test_token_change_at_runtime_takes_effect_at_once(send_url, control):
    control.configure(token="new-token")

    assert send(send_url, 1).status_code == 401
    assert send(send_url, 2, token="new-token").status_code == 200


def test_stats_after_counts_acceptances_strictly_after_that_time(send_url, control):
    for msg_id in (1, 2):
        send(send_url, msg_id)
    boundary = time.time()
    for msg_id in (3, 4, 5):
        send(send_url, msg_id)

    assert control.stats(after=boundary)["accepted_after"] == 3
    assert control.stats(after=0)["accepted_after"] == 5
    assert "accepted_after" not in control.stats()


def test_reset_clears_records_but_keeps_the_config(send_url, control):
    control.configure(latency=0.01)
    send(send_url, 1)
    send(send_url, 2, token="bad")

    control.reset()

    stats = control.stats()
    assert stats["requests_total"] == stats["accepted_total"] == 0
    assert set(stats["outcomes"].values()) == {0}
    assert stats["first_accept_at"] is None
    assert control.accepted() == []
    assert control.config()["latency"] == 0.01


@pytest.mark.parametrize(
    "options",
    [
        {"error_rate": 1.5},
        {"reject_rate": -0.1},
        {"latency": -1},
        {"latency": "fast"},
        {"rate_limit": -5},
        {"retry_after": "later"},
        {"token": ""},
        {"seed": "x"},
        {"colour": "blue"},
    ],
)
def test_bad_config_values_are_refused_and_change_nothing(control, options):
    before = control.config()

    with pytest.raises(requests.HTTPError) as error:
        control.configure(**options)

    assert error.value.response.status_code == 400
    assert control.config() == before


def test_the_same_seed_draws_the_same_misbehaviour(send_url, control):
    def statuses():
        return [send(send_url, msg_id).status_code for msg_id in range(20)]

    control.configure(seed=7, error_rate=0.5)
    first = statuses()
    control.configure(seed=7)

    assert statuses() == first
    assert 200 in first and len(set(first)) > 1


def test_config_does_not_show_the_token(control):
    assert TOKEN not in json.dumps(control.config())


def test_rate_limit_answers_429_above_the_bucket_and_counts_them(send_url, control):
    control.configure(rate_limit=0.1, rate_limit_burst=3)

    statuses = [send(send_url, msg_id).status_code for msg_id in range(5)]

    assert statuses == [200, 200, 200, 429, 429]
    stats = control.stats()
    assert stats["outcomes"]["throttled"] == 2
    assert stats["accepted_total"] == 3
    assert stats["requests_total"] == 5


def test_rate_limit_refills_at_its_rate(send_url, control):
    control.configure(rate_limit=2, rate_limit_burst=1)
    assert send(send_url, 1).status_code == 200
    assert send(send_url, 2).status_code == 429

    time.sleep(0.6)  # half a second brings one send back

    assert send(send_url, 3).status_code == 200


def test_rate_limit_holds_across_connections(send_url, control):
    control.configure(rate_limit=0.1, rate_limit_burst=2)
    sessions = [requests.Session() for _ in range(4)]

    statuses = [
        send(send_url, msg_id, session=session).status_code for msg_id, session in enumerate(sessions)
    ]

    assert sorted(statuses) == [200, 200, 429, 429]


def test_retry_after_is_announced_on_429_when_configured(send_url, control):
    control.configure(rate_limit=0.1, rate_limit_burst=1, retry_after=1.5)
    send(send_url, 1)

    response = send(send_url, 2)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"


def test_a_429_without_retry_after_configured_has_no_header(send_url, control):
    control.configure(rate_limit=0.1, rate_limit_burst=1)
    send(send_url, 1)

    response = send(send_url, 2)

    assert response.status_code == 429
    assert "Retry-After" not in response.headers


def test_unauthorized_sends_do_not_spend_the_account_limit(send_url, control):
    control.configure(rate_limit=0.1, rate_limit_burst=1)

    assert send(send_url, 1, token="wrong").status_code == 401
    assert send(send_url, 2).status_code == 200


def test_rate_limit_bucket_on_its_own_clock():
    config = Config(token=TOKEN, rate_limit=10, rate_limit_burst=2)
    limit = RateLimit()

    assert [limit.allows(config, 100.0) for _ in range(3)] == [True, True, False]
    assert not limit.allows(config, 100.05)  # half a token
    assert limit.allows(config, 100.125)
    assert [limit.allows(config, 200.0) for _ in range(3)] == [True, True, False]  # full, not more


def test_rate_limit_bucket_defaults_to_a_tenth_of_a_second():
    assert Config(token=TOKEN, rate_limit=300).bucket_size == 30
    assert Config(token=TOKEN, rate_limit=3).bucket_size == 1
