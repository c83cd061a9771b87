"""Several providers: routes by operator code, weight among the healthy ones, failover and weight
shifts, on the fake clock with the database as the truth."""

import random
from collections import Counter
from datetime import timedelta

import pytest

from clients.models import Client
from messages_app import services
from messages_app.models import Message, ProviderPause
from messages_app.senders import sender_holder
from messages_app.sending.django_store import DjangoMessageStore
from messages_app.sending.gate import ProviderGate
from messages_app.sending.outcomes import Outcome, ProviderAnswer
from messages_app.sending.routing import NoRoute, Providers, SlowDelivery, Weights
from messages_app.sending.sender import DELIVERY_SPEEDS_EVERY, Sender
from messages_app.sending.store import DeliverySpeed
from messages_app.sending.transports.base import TransportAuthError, TransportError
from providers.models import Provider, ProviderWeightChange

from .clock import FakeClock
from .fakes import IdleStore, ScriptedTransport, providers_of, soon, spec
from .test_sender import running_mailing

Status = Message.Status


def gate(clock, *, breaker_threshold: int = 5, breaker_pause: float = 30.0) -> ProviderGate:
    return ProviderGate(
        breaker_threshold=breaker_threshold, breaker_pause=breaker_pause, auth_pause=60.0, clock=clock.wall
    )


def sender_over(providers: Providers, clock, *, concurrency: int = 50) -> Sender:
    return Sender(
        providers=providers,
        store=DjangoMessageStore(holder=sender_holder(), clock=clock),
        clock=clock,
        concurrency=concurrency,
        end_margin=0.05,
        stop_grace=5.0,
        request_timeout=6.0,
        max_attempts=10,
    )


def messages_to(mailing, codes: list[str]) -> None:
    """One message of the mailing per code, each to a new client of that operator."""
    clients = Client.objects.bulk_create(
        Client(phone=f"7{code}{number:07d}", operator_code=code) for number, code in enumerate(codes)
    )
    Message.objects.bulk_create(Message(mailing=mailing, client=client) for client in clients)


def by_provider(mailing) -> Counter:
    rows = Message.objects.filter(mailing=mailing).values_list("client__operator_code", "provider", "status")
    return Counter(rows)


# --- choosing, without a database --------------------------------------------------------------


def test_routes_decide_first_then_weight_among_those_that_may_send():
    clock = FakeClock()
    only_910 = spec("a", operators_only=frozenset({"910"}))
    not_910 = spec("b", weight=300, operators_excluded=frozenset({"910", "999"}))
    anyone = spec("c", operators_excluded=frozenset({"999"}))
    providers = providers_of(
        clock, [(s, ScriptedTransport(clock), gate(clock)) for s in (only_910, not_910, anyone)]
    )
    providers._choices = random.Random(7).choices  # the same draws every run

    picks = Counter((code, providers.choose(code).name) for code in ["910", "903"] * 5000)

    assert set(picks) == {("910", "a"), ("910", "c"), ("903", "b"), ("903", "c")}
    assert 2300 < picks["910", "a"] < 2700  # weights 100 : 100
    assert 3550 < picks["903", "b"] < 3950  # weights 300 : 100
    with pytest.raises(NoRoute, match="no provider takes operator code 999"):
        providers.choose("999")


def test_a_paused_provider_takes_nothing_and_after_the_pause_one_trial_at_a_time():
    clock = FakeClock()
    a, b = gate(clock), gate(clock)
    providers = providers_of(
        clock, [(spec("a"), ScriptedTransport(clock), a), (spec("b"), ScriptedTransport(clock), b)]
    )
    for _ in range(5):
        a.record(ProviderAnswer.ERROR, 0.1)

    assert {providers.choose("903").name for _ in range(200)} == {"b"}
    assert providers.capacity(100) == 100  # b alone may take all of it

    clock.advance(31)  # a's pause is over: its trial request
    trial = next(route for route in providers.routes if route.name == "a")
    trial.in_flight = 1
    assert {providers.choose("903").name for _ in range(200)} == {"b"}
    trial.in_flight = 0
    assert "a" in {providers.choose("903").name for _ in range(200)}


def test_weights_move_away_after_errors_in_a_window_and_drift_back_with_reasons():
    clock = FakeClock()
    weights = Weights(
        {"a": 100, "b": 100}, clock=clock, wall=clock.wall, errors=5, window=10.0, drift_every=60.0
    )

    for _ in range(4):
        weights.on_error("a")
        clock.advance(3)  # spread over 12 s: never five within 10 s
    weights.on_error("a")
    assert weights.current == {"a": 100, "b": 100}

    for _ in range(10):
        weights.on_error("a")  # ten errors at once: two shifts
    assert weights.current == {"a": 80, "b": 100}

    clock.advance(59)
    weights.drift()
    assert weights.current["a"] == 80  # not yet
    clock.advance(1)
    weights.drift()
    assert weights.current["a"] == 90
    weights.drift()
    assert weights.current["a"] == 90  # one step per drift period
    clock.advance(60)
    weights.drift()
    clock.advance(60)
    weights.drift()
    assert weights.current == {"a": 100, "b": 100}  # resting, and it stays there

    changes = weights.take_changes()
    assert [(c.provider, c.weight_from, c.weight_to) for c in changes] == [
        ("a", 100, 90),
        ("a", 90, 80),
        ("a", 80, 90),
        ("a", 90, 100),
    ]
    assert changes[0].reason == "5 errors within 10 s"
    assert changes[-1].reason == "no shift for 60 s: back toward its resting weight 100"
    assert weights.take_changes() == []


def test_slow_delivery_moves_weight_away_once_per_drift_period_and_it_drifts_back_once_fast():
    clock = FakeClock()
    weights = Weights(
        {"a": 100, "b": 100},
        clock=clock,
        wall=clock.wall,
        errors=1_000_000,
        window=60.0,
        drift_every=300.0,
        slow=SlowDelivery(after=300.0, share=0.15, sample=100),
    )

    weights.on_delivery_speed("a", DeliverySpeed(judged=99, slow=99, delivered=50))  # too few to tell
    # Not one receipt: the receipts are not reaching us, which says nothing of the provider.
    weights.on_delivery_speed("a", DeliverySpeed(judged=400, slow=400, delivered=0))
    weights.on_delivery_speed(
        "a", DeliverySpeed(judged=400, slow=59, delivered=371)
    )  # 14.75 %: under the share
    assert weights.current == {"a": 100, "b": 100}

    weights.on_delivery_speed("a", DeliverySpeed(judged=400, slow=68, delivered=366))
    assert weights.current == {"a": 90, "b": 100}
    clock.advance(DELIVERY_SPEEDS_EVERY)
    weights.on_delivery_speed("a", DeliverySpeed(judged=400, slow=68, delivered=366))
    assert weights.current["a"] == 90  # the same messages, mostly: once per drift period

    clock.advance(240)
    weights.drift()
    assert weights.current["a"] == 90  # still slow: no drift back
    weights.on_delivery_speed("a", DeliverySpeed(judged=420, slow=80, delivered=380))
    assert weights.current["a"] == 80

    clock.advance(60)
    weights.on_delivery_speed("a", DeliverySpeed(judged=400, slow=10, delivered=395))  # fast again
    weights.drift()
    assert weights.current["a"] == 80  # a minute after its last shift
    clock.advance(240)
    weights.drift()
    clock.advance(300)
    weights.drift()
    assert weights.current == {"a": 100, "b": 100}

    changes = weights.take_changes()
    assert [(c.provider, c.weight_from, c.weight_to) for c in changes] == [
        ("a", 100, 90),
        ("a", 90, 80),
        ("a", 80, 90),
        ("a", 90, 100),
    ]
    assert changes[0].reason == "17 % of 400 messages took over 300 s to be delivered"
    assert changes[1].reason == "19 % of 420 messages took over 300 s to be delivered"


def test_a_sender_shifts_the_weight_of_a_slow_provider_and_records_why():
    clock = FakeClock()
    providers = providers_of(
        clock, [(spec(name), ScriptedTransport(clock), gate(clock)) for name in "ab"], drift_every=300.0
    )
    store = IdleStore(
        {
            "a": DeliverySpeed(judged=400, slow=100, delivered=350),
            "b": DeliverySpeed(judged=400, slow=4, delivered=398),
        }
    )
    sender = Sender(
        providers=providers,
        store=store,
        clock=clock,
        concurrency=10,
        end_margin=0.05,
        stop_grace=5.0,
        request_timeout=6.0,
        max_attempts=10,
    )
    started = clock.monotonic()

    sender.run(seconds=2.5 * DELIVERY_SPEEDS_EVERY)

    assert [round(at - started) for at in store.speeds_asked_at] == [0, 60, 120]
    assert providers.weights.current == {"a": 90, "b": 100}
    assert [(c.provider, c.weight_from, c.weight_to, c.reason) for c in store.weight_changes] == [
        ("a", 100, 90, "25 % of 400 messages took over 300 s to be delivered")
    ]


def test_every_provider_shifted_to_nothing_still_shares_the_traffic():
    clock = FakeClock()
    providers = providers_of(
        clock, [(spec(name), ScriptedTransport(clock), gate(clock)) for name in "ab"], errors=1, window=10.0
    )
    for _ in range(10):
        providers.weights.on_error("a")
        providers.weights.on_error("b")

    assert providers.weights.current == {"a": 0, "b": 0}
    assert {providers.choose("903").name for _ in range(200)} == {"a", "b"}


# --- through the sender and the database -------------------------------------------------------

pytestmark_db = pytest.mark.django_db(transaction=True)


@pytestmark_db
def test_routes_are_honoured_exactly_over_ten_thousand_messages():
    clock = FakeClock()
    mailing = running_mailing()
    codes = ["910"] * 3000 + ["903"] * 6000 + ["999"] * 1000
    random.Random(3).shuffle(codes)
    messages_to(mailing, codes)
    routes = [
        (spec("a", operators_only=frozenset({"910"})), ScriptedTransport(clock, name="a"), gate(clock)),
        (
            spec("b", weight=300, operators_excluded=frozenset({"910", "999"})),
            ScriptedTransport(clock, name="b"),
            gate(clock),
        ),
        (spec("c", operators_excluded=frozenset({"999"})), ScriptedTransport(clock, name="c"), gate(clock)),
    ]

    report = sender_over(providers_of(clock, routes), clock, concurrency=500).run(
        until_idle=True, seconds=600
    )

    counts = by_provider(mailing)
    assert report[Outcome.SENT] == 9000 and report[Outcome.FAILED] == 1000
    assert {(code, provider) for code, provider, _ in counts} == {
        ("910", "a"),
        ("910", "c"),
        ("903", "b"),
        ("903", "c"),
        ("999", ""),
    }
    sent = Counter(
        {(code, provider): n for (code, provider, status), n in counts.items() if status == Status.SENT}
    )
    assert sent["910", "a"] + sent["910", "c"] == 3000
    assert sent["903", "b"] + sent["903", "c"] == 6000
    assert 1300 < sent["910", "a"] < 1700 and 4200 < sent["903", "b"] < 4800
    assert counts["999", "", Status.FAILED] == 1000
    unroutable = Message.objects.filter(mailing=mailing, client__operator_code="999")
    assert set(unroutable.values_list("last_error", flat=True)) == {"no provider takes operator code 999"}
    # Each provider's own id for what it accepted, and every acceptance exactly once.
    for transport in (t for _, t, _ in routes):
        accepted = [msg_id for msg_id, _ in transport.accepted]
        assert len(accepted) == len(set(accepted))
        ids = Message.objects.filter(id__in=accepted).values_list("provider_message_id", flat=True)
        assert set(ids) == {f"{transport.name}-{msg_id}" for msg_id in accepted}


@pytestmark_db
def test_a_provider_that_refuses_connections_loses_its_share_within_seconds_and_nothing_is_lost():
    clock = FakeClock()
    mailing = running_mailing()
    messages_to(mailing, ["903"] * 3000)
    refusing_from: list[float] = []

    def a_script(msg_id, attempt):
        if len(a.requests) >= 400:
            if not refusing_from:
                refusing_from.append(clock.wall())
            return TransportError("ClientConnectorError: connection refused"), 0.05
        return None, 0.05

    a = ScriptedTransport(clock, a_script, name="a")
    b = ScriptedTransport(clock, lambda msg_id, attempt: (None, 0.05), name="b")
    providers = providers_of(
        clock, [(spec("a"), a, gate(clock)), (spec("b"), b, gate(clock))], errors=5, window=10.0
    )

    sender_over(providers, clock, concurrency=50).run(until_idle=True, seconds=600)

    assert Message.objects.filter(mailing=mailing).exclude(status=Status.SENT).count() == 0
    accepted = [msg_id for t in (a, b) for msg_id, _ in t.accepted]
    assert sorted(accepted) == sorted(Message.objects.filter(mailing=mailing).values_list("id", flat=True))
    (failed_at,) = refusing_from
    # After the breaker's pause began, a takes at most its one trial request per pause.
    late_on_a = [wall for _, wall in a.requests if wall > failed_at + 2]
    assert len(late_on_a) <= 2
    assert any(wall > failed_at + 2 for _, wall in b.requests)
    assert set(ProviderPause.objects.values_list("provider", flat=True)) == {"a"}
    assert set(Message.objects.filter(mailing=mailing).values_list("provider", flat=True)) == {"a", "b"}
    # Every message a refused went to b on a later attempt, once.
    refused_by_a = {msg_id for msg_id, _ in a.requests} - {msg_id for msg_id, _ in a.accepted}
    assert refused_by_a and set(b.attempts_of(msg_id) for msg_id in refused_by_a) == {1}
    assert set(Message.objects.filter(id__in=refused_by_a).values_list("provider", flat=True)) == {"b"}
    shifts = list(ProviderWeightChange.objects.values_list("provider", "weight_from", "weight_to", "reason"))
    assert shifts and shifts[-1] == ("a", 100, 90, "5 errors within 10 s")


@pytestmark_db
def test_a_refused_token_pauses_that_provider_alone():
    clock = FakeClock()
    mailing = running_mailing()
    messages_to(mailing, ["903"] * 300)
    a = ScriptedTransport(clock, lambda msg_id, attempt: (TransportAuthError("HTTP 401"), 0.05), name="a")
    b = ScriptedTransport(clock, lambda msg_id, attempt: (None, 0.05), name="b")
    providers = providers_of(clock, [(spec("a"), a, gate(clock)), (spec("b"), b, gate(clock))])

    report = sender_over(providers, clock, concurrency=20).run(until_idle=True, seconds=120)

    assert report[Outcome.SENT] == 300 and report[Outcome.FAILED] == 0
    assert len(a.requests) <= 20  # what was in flight when the first 401 came, and no more
    assert services.provider_pauses(now=clock.now()).get("a") > clock.now() + timedelta(seconds=30)
    assert services.provider_pauses(now=clock.now()).get("b") is None
    assert set(Message.objects.filter(mailing=mailing).values_list("provider", flat=True)) == {"b"}


@pytestmark_db
def test_a_sender_starts_anew_once_the_providers_change_and_leaves_nothing_claimed():
    clock = FakeClock()
    mailing = running_mailing()
    messages_to(mailing, ["903"] * 400)
    slow = ScriptedTransport(clock, lambda msg_id, attempt: (None, 0.5), name="a")
    providers = providers_of(clock, [(spec("a"), slow, gate(clock))])

    def add_a_provider():
        Provider.objects.create(name="new", url="https://sms.example/v1", credentials_env="NEW_TOKEN")

    started = clock.monotonic()
    slow.on_request = lambda count: count == 1 and soon(2.5, add_a_provider)
    sender_over(providers, clock, concurrency=20).run(seconds=60)

    assert clock.monotonic() - started < 10  # not the whole minute: it returned for a new sender
    left = Counter(Message.objects.filter(mailing=mailing).values_list("status", flat=True))
    assert left[Status.SENDING] == 0 and 0 < left[Status.SENT] < 400
    assert left[Status.SENT] == len(slow.accepted)
