"""The two limits of every request in flight, with no timer of its own.

A request may run until its own limit (when it started + the request timeout) and until its
mailing's end, whichever comes first; then it is cancelled and told which limit it met. A timer
per request (asyncio.timeout: its enter and exit) showed in a sender's CPU profile. Here there
is one timer for the oldest own limit (requests start in turn and share one timeout, so the oldest
runs out first) and one per mailing at its end, which moves when the end moves.

Event-loop thread only; imports no Django.
"""

import asyncio
import enum

# uvloop's timers count whole milliseconds and may fire up to half of one early: a limit this close
# is due, or the timer would set itself again at once until the clock caught up.
TIMER_RESOLUTION = 0.001


class Cut(enum.Enum):
    TIMEOUT = "timeout"  # no answer within the request's own limit
    END = "end"  # the mailing's end came first
    STOP = "stop"  # the sender stopped before either (its wind-down cancelled the request)


class Cutoffs:
    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._loop = loop
        self._timeout = timeout
        self._limits: dict[asyncio.Task, float] = {}  # in start order, so own limits ascend
        self._sending: dict[int, set[asyncio.Task]] = {}  # mailing id -> its requests in flight
        self._ends: dict[int, asyncio.TimerHandle] = {}  # pending: the end has not come yet
        self._limit_timer_set = False
        self._cut: dict[asyncio.Task, Cut] = {}

    def begin(self, mailing_id: int, task: asyncio.Task) -> bool:
        """`task` (running now) starts its request for the mailing. False, and nothing begins, when
        the mailing's end has come (its timer fired) or none was set."""
        if mailing_id not in self._ends:
            return False
        limit = self._loop.time() + self._timeout
        self._limits[task] = limit
        sending = self._sending.get(mailing_id)
        if sending is None:
            sending = self._sending[mailing_id] = set()
        sending.add(task)
        if not self._limit_timer_set:
            self._limit_timer_set = True
            self._loop.call_at(limit, self._cut_overdue)
        return True

    def end(self, mailing_id: int, task: asyncio.Task) -> Cut | None:
        """The request is over: which limit cut it, if one did (its task was cancelled for it)."""
        del self._limits[task]
        self._sending[mailing_id].discard(task)
        return self._cut.pop(task, None)

    def set_end(self, mailing_id: int, deadline: float) -> None:
        """The mailing ends at loop time `deadline`: later lets its requests run on (up to their own
        limits), earlier or past cuts them at once."""
        timer = self._ends.get(mailing_id)
        if timer is not None:
            timer.cancel()
        self._ends[mailing_id] = self._loop.call_at(deadline, self._cut_mailing, mailing_id)

    def sending(self, mailing_id: int) -> bool:
        """Some request of the mailing has begun and not ended (the sender's own in-flight tasks
        also count those still waiting in the gate)."""
        return bool(self._sending.get(mailing_id))

    def forget(self, mailing_id: int) -> None:
        """The sender no longer sends for the mailing; ignored while a request of it is in flight."""
        if self.sending(mailing_id):
            return
        self._sending.pop(mailing_id, None)
        timer = self._ends.pop(mailing_id, None)
        if timer is not None:
            timer.cancel()

    def _cut_overdue(self) -> None:
        self._limit_timer_set = False
        due = self._loop.time() + TIMER_RESOLUTION
        for task, limit in self._limits.items():
            if limit > due:
                self._limit_timer_set = True
                self._loop.call_at(limit, self._cut_overdue)
                return
            self._cancel(task, Cut.TIMEOUT)

    def _cut_mailing(self, mailing_id: int) -> None:
        del self._ends[mailing_id]
        for task in self._sending.get(mailing_id, ()):
            self._cancel(task, Cut.END)

    def _cancel(self, task: asyncio.Task, cut: Cut) -> None:
        # A task already cut, not yet woken, keeps the first reason and one cancellation.
        if task not in self._cut:
            self._cut[task] = cut
            task.cancel()
