"""The limits of requests in flight, on a fake event loop whose time the tests move by hand."""

import heapq
import itertools

from messages_app.sending.cutoffs import Cut, Cutoffs


class Timer:
    def __init__(self, loop: "FakeLoop", when: float, callback, args) -> None:
        self.when, self._callback, self._args, self.cancelled = when, callback, args, False
        loop.timers_set += 1

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        self._callback(*self._args)


class FakeLoop:
    """The two things Cutoffs asks of its loop: the time, and a timer (which may fire `early`, as
    uvloop's, rounded to the millisecond, may by half of one)."""

    def __init__(self, *, early: float = 0.0) -> None:
        self.early = early
        self.now = 0.0
        self.timers_set = 0
        self._timers: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback, *args) -> Timer:
        timer = Timer(self, when, callback, args)
        heapq.heappush(self._timers, (when, next(self._order), timer))
        return timer

    def advance_to(self, now: float) -> None:
        for _ in range(10_000):  # a timer that keeps setting itself again fails fast, not by hanging
            if not (self._timers and self._timers[0][0] - self.early <= now):
                break
            when, _, timer = heapq.heappop(self._timers)
            self.now = max(self.now, when - self.early)
            if not timer.cancelled:
                timer.fire()
        else:
            raise AssertionError("timers keep firing at the same moment")
        self.now = now


class Request:
    """Stands for a request's task: what Cutoffs does to it is cancel it."""

    def __init__(self, name: str) -> None:
        self.name, self.cancels = name, 0

    def cancel(self) -> None:
        self.cancels += 1

    def __repr__(self) -> str:
        return self.name


def one_request_in_flight(*, end: float, early: float = 0.0) -> tuple[FakeLoop, Cutoffs, Request]:
    """A request of mailing 1, begun at 0 (own limit 10), the mailing ending at `end`."""
    loop = FakeLoop(early=early)
    cutoffs = Cutoffs(loop, timeout=10.0)
    cutoffs.set_end(1, end)
    request = Request("request")
    assert cutoffs.begin(1, request)
    return loop, cutoffs, request


def test_each_request_is_cut_at_its_own_limit_by_one_timer_for_the_oldest():
    loop = FakeLoop()
    cutoffs = Cutoffs(loop, timeout=10.0)
    cutoffs.set_end(1, 3600.0)
    cutoffs.set_end(2, 3600.0)
    timers_for_the_ends = loop.timers_set
    first, answered, second = Request("first"), Request("answered"), Request("second")
    cutoffs.begin(1, first)
    loop.advance_to(1.0)
    cutoffs.begin(1, answered)
    loop.advance_to(2.0)
    cutoffs.begin(2, second)
    assert loop.timers_set - timers_for_the_ends == 1

    loop.advance_to(9.99)
    assert cutoffs.end(1, answered) is None  # answered in time
    assert first.cancels == 0
    loop.advance_to(10.0)
    assert (first.cancels, second.cancels) == (1, 0)
    assert cutoffs.end(1, first) is Cut.TIMEOUT
    loop.advance_to(11.99)
    assert second.cancels == 0
    loop.advance_to(12.0)
    assert second.cancels == 1
    assert cutoffs.end(2, second) is Cut.TIMEOUT
    assert not cutoffs.sending(1) and not cutoffs.sending(2)


def test_a_request_that_answered_is_never_cut_and_costs_no_timer_of_its_own():
    loop = FakeLoop()
    cutoffs = Cutoffs(loop, timeout=10.0)
    cutoffs.set_end(1, 3600.0)
    requests = [Request(str(number)) for number in range(1000)]
    for number, request in enumerate(requests):
        loop.advance_to(number * 0.01)
        cutoffs.begin(1, request)
        cutoffs.end(1, request)
    loop.advance_to(100.0)

    assert all(request.cancels == 0 for request in requests)
    assert loop.timers_set == 2  # the end's and the first request's limit


def test_the_end_cuts_only_that_mailings_requests():
    loop = FakeLoop()
    cutoffs = Cutoffs(loop, timeout=10.0)
    cutoffs.set_end(1, 5.0)
    cutoffs.set_end(2, 50.0)
    ours, other = Request("ours"), Request("other")
    cutoffs.begin(1, ours)
    cutoffs.begin(2, other)

    loop.advance_to(5.0)

    assert (ours.cancels, other.cancels) == (1, 0)
    assert cutoffs.end(1, ours) is Cut.END
    assert cutoffs.sending(2) and not cutoffs.sending(1)


def test_an_end_moved_later_lets_requests_run_to_their_own_limit_and_earlier_cuts_at_once():
    loop, cutoffs, request = one_request_in_flight(end=5.0)

    cutoffs.set_end(1, 60.0)  # later
    loop.advance_to(9.0)
    assert request.cancels == 0
    loop.advance_to(10.0)
    assert cutoffs.end(1, request) is Cut.TIMEOUT  # its own limit, not the end

    late = Request("late")
    cutoffs.begin(1, late)
    loop.advance_to(12.0)
    cutoffs.set_end(1, 11.0)  # earlier, already past
    loop.advance_to(12.0)
    assert late.cancels == 1
    assert cutoffs.end(1, late) is Cut.END


def test_a_request_met_by_both_limits_before_it_wakes_keeps_the_first_and_one_cancellation():
    loop, cutoffs, request = one_request_in_flight(end=10.0)  # the end's timer was set first

    loop.advance_to(10.0)
    cutoffs.set_end(1, 60.0)  # the end moves later before the request woke up: it stays cut

    assert request.cancels == 1
    assert cutoffs.end(1, request) is Cut.END


def test_no_request_begins_once_its_mailings_end_has_come_or_before_one_is_known():
    loop = FakeLoop(early=0.0005)
    cutoffs = Cutoffs(loop, timeout=10.0)
    assert not cutoffs.begin(1, Request("before any end"))

    cutoffs.set_end(1, 5.0)
    loop.advance_to(4.9995)  # the end's timer fired a moment before the deadline
    assert not cutoffs.begin(1, Request("after the end"))
    assert not cutoffs.sending(1)

    cutoffs.set_end(1, 60.0)  # moved later: requests may begin again
    assert cutoffs.begin(1, Request("after the end moved"))


def test_a_forgotten_mailing_takes_no_request_and_its_end_no_longer_fires():
    loop, cutoffs, request = one_request_in_flight(end=5.0)
    cutoffs.forget(1)  # ignored: a request is in flight
    loop.advance_to(5.0)
    assert cutoffs.end(1, request) is Cut.END

    cutoffs.set_end(1, 50.0)
    cutoffs.forget(1)
    loop.advance_to(60.0)
    assert not cutoffs.begin(1, Request("after forget"))


def test_a_timer_a_moment_early_still_cuts_the_request_it_was_set_for():
    loop, cutoffs, request = one_request_in_flight(end=3600.0, early=0.0004)
    timers_before = loop.timers_set

    loop.advance_to(9.9996)

    assert request.cancels == 1
    assert loop.timers_set == timers_before  # not set again at once, over and over
