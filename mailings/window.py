"""The local-time sending window: when a client's own clock allows a message. Pure: no database,
the present moment is always passed in as `now`.

A mailing may carry a daily window of wall-clock times [start, end). In each timezone it opens
every day when the clock shows `start` and closes when it shows `end`; when end < start the window
crosses midnight (22:00-06:00) and closes on the next day.

Daylight saving time (the timezone database decides what the clocks show):
- a local time that does not exist that day (the clocks jump over it) is skipped to the next
  valid moment, the instant of the jump: a window opening at 02:30 in America/New_York on
  2026-03-08 opens at 03:00 EDT;
- a local time that occurs twice (the clocks go back) takes its first occurrence (fold=0): a
  window closing at 01:30 in America/New_York on 2026-11-01 closes at 01:30 EDT, one hour
  before the clock shows 01:30 for the second time.

Everything here works per timezone, never per client: an audience of a million clients lives in
a few dozen zones, and the timezone database has about 600.
"""

import functools
import itertools
import zoneinfo
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@functools.cache
def all_zones() -> tuple[str, ...]:
    """Every IANA zone name a client may carry (clients.models.validate_timezone), read once."""
    return tuple(sorted(zoneinfo.available_timezones()))


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    # ZoneInfo's own cache keeps only a few zones strongly: the 600 would be read from disk again.
    return zoneinfo.ZoneInfo(name)


def _wall_clock(moment: datetime, zone: zoneinfo.ZoneInfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def local_instant(day: date, at: time, zone: str) -> datetime:
    """The instant (in UTC) at which the clocks of `zone` show `at` on `day`, by the DST rule above."""
    tz = _zone(zone)
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)  # fold=0: the first of two occurrences
    if _wall_clock(first, tz) == wall:
        return first
    # `wall` falls in a gap: between the two readings of it lies the jump, the first instant whose
    # wall clock is past `wall`. Transitions happen on whole seconds.
    low, high = sorted((first, wall.replace(tzinfo=tz, fold=1).astimezone(UTC)))
    while high - low > timedelta(seconds=1):
        middle = low + timedelta(seconds=(high - low).total_seconds() // 2)
        if _wall_clock(middle, tz) >= wall:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True, slots=True)
class LocalWindow:
    start: time
    end: time

    def __post_init__(self) -> None:
        if self.start == self.end:
            raise ValueError("a local window's start and end must differ")

    @classmethod
    def parse(cls, text: str) -> "LocalWindow | None":
        """ "09:00-21:00" as a window; "" as none. ValueError for anything else."""
        if not text.strip():
            return None
        start, separator, end = text.partition("-")
        if not separator:
            raise ValueError(f"{text!r} is not a window such as 09:00-21:00")
        return cls(time.fromisoformat(start.strip()), time.fromisoformat(end.strip()))

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def occurrence(self, zone: str, day: date) -> tuple[datetime, datetime]:
        """When the window that opens on the local `day` opens and closes (empty when DST ate it)."""
        closing_day = day + timedelta(days=1) if self.crosses_midnight else day
        return local_instant(day, self.start, zone), local_instant(closing_day, self.end, zone)

    def occurrences(self, zone: str, now: datetime) -> Iterator[tuple[datetime, datetime]]:
        """The window's (opens, closes) in `zone` that have not closed at `now`, in order."""
        yesterday = now.astimezone(_zone(zone)).date() - timedelta(days=1)
        for days in itertools.count():
            opens, closes = self.occurrence(zone, yesterday + timedelta(days=days))
            if opens < closes and closes > now:
                yield opens, closes

    def is_open(self, zone: str, now: datetime) -> bool:
        opens, _ = next(self.occurrences(zone, now))
        return opens <= now

    def next_opening(self, zone: str, now: datetime) -> datetime:
        """The first opening after `now` (tomorrow's when the window is open now)."""
        return next(opens for opens, _ in self.occurrences(zone, now) if opens > now)

    def opens_between(self, zone: str, start: datetime, end: datetime) -> bool:
        """Whether the window is open at some moment of [start, end) in `zone`."""
        opens, _ = next(self.occurrences(zone, start))
        return opens < end

    def state(self, zone: str, now: datetime, *, margin: timedelta) -> tuple[bool, datetime]:
        """(True, last moment a request may start) when a request may start now in `zone`, at least
        `margin` before the close; else (False, the next opening)."""
        for opens, closes in self.occurrences(zone, now):
            if opens > now:
                return False, opens
            if now < closes - margin:
                return True, closes - margin
        raise AssertionError("unreachable: occurrences never ends")


@dataclass(frozen=True, slots=True)
class ZoneSplit:
    """The zones where a request may start now, and the others with their next opening."""

    open_until: dict[str, datetime]  # zone: the last moment a request may start in it
    closed_until: dict[str, datetime]  # zone: its next opening
    computed_at: datetime

    @property
    def valid_until(self) -> datetime:
        """The first moment some zone opens or closes: the split must be taken again from then."""
        changes = itertools.chain(self.open_until.values(), self.closed_until.values())
        return min(changes, default=self.computed_at + timedelta(days=1))

    def is_current(self, now: datetime) -> bool:
        return self.computed_at <= now < self.valid_until


def split_zones(
    window: LocalWindow, zones: Iterable[str], now: datetime, *, margin: timedelta = timedelta(0)
) -> ZoneSplit:
    open_until, closed_until = {}, {}
    for zone in zones:
        is_open, until = window.state(zone, now, margin=margin)
        (open_until if is_open else closed_until)[zone] = until
    return ZoneSplit(open_until, closed_until, now)
