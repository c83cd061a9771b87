"""The local-time window's rules (mailings.window), with the clock frozen by time_machine."""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from mailings.window import LocalWindow, all_zones, local_instant, split_zones

DAYTIME = LocalWindow(time(9), time(21))
NIGHT = LocalWindow(time(22), time(6))  # crosses midnight


def at(zone: str, *args: int) -> datetime:
    """A wall-clock moment in `zone` (first occurrence when ambiguous), as the aware instant."""
    return datetime(*args, tzinfo=ZoneInfo(zone))


@time_machine.travel(datetime(2026, 6, 15, 6, 0, tzinfo=UTC), tick=False)
def test_who_is_inside_a_daytime_window_at_one_instant_across_zones():
    now = timezone.now()  # 06:00 UTC
    # local time at that instant: Moscow 09:00, Kolkata 11:30, Tokyo 15:00, London 07:00 (BST),
    # New York 02:00 (EDT), Vladivostok 16:00, Kathmandu 11:45
    inside = {"Europe/Moscow", "Asia/Kolkata", "Asia/Tokyo", "Asia/Vladivostok", "Asia/Kathmandu"}
    waiting = {"Europe/London", "America/New_York", "America/Los_Angeles"}

    split = split_zones(DAYTIME, inside | waiting, now)

    assert set(split.open_until) == inside
    assert split.open_until["Europe/Moscow"] == at("Europe/Moscow", 2026, 6, 15, 21)
    assert split.open_until["Asia/Kolkata"] == at("Asia/Kolkata", 2026, 6, 15, 21)
    assert split.closed_until == {
        "Europe/London": at("Europe/London", 2026, 6, 15, 9),
        "America/New_York": at("America/New_York", 2026, 6, 15, 9),
        "America/Los_Angeles": at("America/Los_Angeles", 2026, 6, 15, 9),
    }
    assert split.valid_until == at("Europe/London", 2026, 6, 15, 9)  # the next change of any zone


@pytest.mark.parametrize(
    ("utc_hour", "utc_minute", "is_open"),
    [(3, 29, False), (3, 30, True), (15, 29, True), (15, 30, False)],  # Kolkata is UTC+05:30
)
def test_half_hour_offset_opens_and_closes_on_its_own_half_hour(utc_hour, utc_minute, is_open):
    with time_machine.travel(datetime(2026, 1, 10, utc_hour, utc_minute, tzinfo=UTC), tick=False):
        assert DAYTIME.is_open("Asia/Kolkata", timezone.now()) is is_open


@time_machine.travel(datetime(2026, 1, 10, 16, 0, tzinfo=UTC), tick=False)
def test_next_opening_per_zone_is_the_next_local_start():
    now = timezone.now()
    assert DAYTIME.next_opening("Asia/Kolkata", now) == at("Asia/Kolkata", 2026, 1, 11, 9)
    assert DAYTIME.next_opening("Europe/Moscow", now) == at("Europe/Moscow", 2026, 1, 11, 9)
    # New York at 11:00 EST is inside: its next opening is tomorrow's.
    assert DAYTIME.is_open("America/New_York", now)
    assert DAYTIME.next_opening("America/New_York", now) == at("America/New_York", 2026, 1, 11, 9)
    assert DAYTIME.next_opening("Pacific/Kiritimati", now) == at("Pacific/Kiritimati", 2026, 1, 11, 9)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (at("Europe/Moscow", 2026, 1, 10, 21, 59), False),
        (at("Europe/Moscow", 2026, 1, 10, 22, 0), True),
        (at("Europe/Moscow", 2026, 1, 11, 0, 30), True),
        (at("Europe/Moscow", 2026, 1, 11, 5, 59), True),
        (at("Europe/Moscow", 2026, 1, 11, 6, 0), False),
        (at("Europe/Moscow", 2026, 1, 11, 12, 0), False),
    ],
)
def test_a_window_crossing_midnight_is_open_on_both_sides_of_it(moment, is_open):
    with time_machine.travel(moment, tick=False):
        assert NIGHT.is_open("Europe/Moscow", timezone.now()) is is_open


@time_machine.travel(at("Asia/Tokyo", 2026, 1, 11, 3, 0), tick=False)
def test_a_window_crossing_midnight_opened_yesterday_closes_this_morning():
    now = timezone.now()
    is_open, until = NIGHT.state("Asia/Tokyo", now, margin=timedelta(0))
    assert (is_open, until) == (True, at("Asia/Tokyo", 2026, 1, 11, 6))
    assert NIGHT.next_opening("Asia/Tokyo", now) == at("Asia/Tokyo", 2026, 1, 11, 22)


# --- daylight saving time ----------------------------------------------------------------------
# America/New_York: 2026-03-08 02:00 EST -> 03:00 EDT (07:00 UTC); 2026-11-01 02:00 EDT -> 01:00 EST
# (06:00 UTC). Europe/London: 2026-03-29 01:00 GMT -> 02:00 BST; 2026-10-25 02:00 BST -> 01:00 GMT.


def test_a_local_time_the_clocks_skip_is_moved_to_the_jump():
    opens = local_instant(datetime(2026, 3, 8).date(), time(2, 30), "America/New_York")
    assert opens == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, the first valid moment
    assert local_instant(datetime(2026, 3, 29).date(), time(1, 15), "Europe/London") == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )  # 02:00 BST


def test_a_local_time_that_occurs_twice_takes_the_first():
    closes = local_instant(datetime(2026, 11, 1).date(), time(1, 30), "America/New_York")
    assert closes == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)  # 01:30 EDT, not 01:30 EST (06:30 UTC)


SPRING_WINDOW = LocalWindow(time(2, 30), time(8))  # opens inside New York's skipped hour


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        (datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), False),  # 01:59:59 EST, before the jump
        (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), True),  # 03:00 EDT: opened at the jump
        (datetime(2026, 3, 8, 11, 59, tzinfo=UTC), True),  # 07:59 EDT
        (datetime(2026, 3, 8, 12, 0, tzinfo=UTC), False),  # 08:00 EDT
    ],
)
def test_spring_forward_day_in_new_york(utc, is_open):
    with time_machine.travel(utc, tick=False):
        assert SPRING_WINDOW.is_open("America/New_York", timezone.now()) is is_open


@time_machine.travel(datetime(2026, 3, 8, 3, 0, tzinfo=UTC), tick=False)  # 22:00 EST the day before
def test_next_opening_on_spring_forward_day_is_the_jump():
    assert SPRING_WINDOW.next_opening("America/New_York", timezone.now()) == datetime(
        2026, 3, 8, 7, 0, tzinfo=UTC
    )


FALL_WINDOW = LocalWindow(time(1, 30), time(9))  # opens in New York's repeated hour


@pytest.mark.parametrize(
    ("utc", "is_open"),
    [
        (datetime(2026, 11, 1, 5, 29, tzinfo=UTC), False),  # 01:29 EDT
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), True),  # 01:30 EDT, the first 01:30
        (datetime(2026, 11, 1, 6, 0, tzinfo=UTC), True),  # 01:00 EST: clocks went back, still open
        (datetime(2026, 11, 1, 13, 59, tzinfo=UTC), True),  # 08:59 EST
        (datetime(2026, 11, 1, 14, 0, tzinfo=UTC), False),  # 09:00 EST
    ],
)
def test_fall_back_day_in_new_york_opens_at_the_first_occurrence_and_stays_open(utc, is_open):
    with time_machine.travel(utc, tick=False):
        assert FALL_WINDOW.is_open("America/New_York", timezone.now()) is is_open


@time_machine.travel(datetime(2026, 10, 24, 22, 0, tzinfo=UTC), tick=False)  # 23:00 BST
def test_london_night_window_on_fall_back_night_is_an_hour_longer():
    opens, closes = next(NIGHT.occurrences("Europe/London", timezone.now()))
    assert opens == datetime(2026, 10, 24, 21, 0, tzinfo=UTC)  # 22:00 BST
    assert closes == datetime(2026, 10, 25, 6, 0, tzinfo=UTC)  # 06:00 GMT
    assert closes - opens == timedelta(hours=9)


@time_machine.travel(datetime(2026, 3, 28, 23, 0, tzinfo=UTC), tick=False)  # 23:00 GMT
def test_london_night_window_on_spring_forward_night_is_an_hour_shorter():
    is_open, closes = NIGHT.state("Europe/London", timezone.now(), margin=timedelta(0))
    assert is_open
    assert closes == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)  # 06:00 BST
    assert closes - datetime(2026, 3, 28, 22, 0, tzinfo=UTC) == timedelta(hours=7)


def test_a_window_the_clocks_jump_over_entirely_opens_the_next_day():
    inside_gap = LocalWindow(time(2, 10), time(2, 50))
    now = datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # 00:00 EST on the spring-forward day
    assert inside_gap.next_opening("America/New_York", now) == at("America/New_York", 2026, 3, 9, 2, 10)


@time_machine.travel(at("Europe/Moscow", 2026, 1, 10, 20, 59, 50), tick=False)
def test_a_zone_within_the_margin_before_its_close_counts_as_closed_until_tomorrow():
    now = timezone.now()
    assert DAYTIME.state("Europe/Moscow", now, margin=timedelta(seconds=5)) == (
        True,
        at("Europe/Moscow", 2026, 1, 10, 20, 59, 55),
    )
    assert DAYTIME.state("Europe/Moscow", now, margin=timedelta(seconds=15)) == (
        False,
        at("Europe/Moscow", 2026, 1, 11, 9),
    )


def test_opens_between_tells_whether_a_zone_gets_any_window_time():
    start = at("Europe/Moscow", 2026, 1, 10, 22, 0)
    assert not DAYTIME.opens_between("Europe/Moscow", start, start + timedelta(hours=11))
    assert DAYTIME.opens_between("Europe/Moscow", start, start + timedelta(hours=11, seconds=1))
    # Tokyo is at 04:00 then: its window opens five hours later.
    assert not DAYTIME.opens_between("Asia/Tokyo", start, start + timedelta(hours=5))
    assert DAYTIME.opens_between("Asia/Tokyo", start, start + timedelta(hours=5, seconds=1))
    assert NIGHT.opens_between("Europe/Moscow", start, start + timedelta(seconds=1))


def test_start_equal_to_end_is_refused():
    with pytest.raises(ValueError):
        LocalWindow(time(9), time(9))


def test_every_zone_of_the_database_gets_a_state():
    split = split_zones(DAYTIME, all_zones(), datetime(2026, 6, 15, 6, 0, tzinfo=UTC))
    assert len(split.open_until) + len(split.closed_until) == len(all_zones()) > 500
