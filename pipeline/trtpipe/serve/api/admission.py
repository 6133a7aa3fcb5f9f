"""Bounds on running and on waiting requests, and the set of requests in flight.

Beyond both bounds a request gets an immediate 429 with Retry-After rather than a place in a queue with no
end. Every admitted request holds a `Ticket`: the one handle through which a deadline, a drain or a client
disconnect ends it (by cancelling its task, which cancels its Triton streams on the way out).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from contextlib import nullcontext

from trtpipe.serve import errors
from trtpipe.serve.errors import RequestError


class LocalSlots:
    """The counts of one process (the default). shared_limits.SharedSlots is the same for N API servers."""

    shared = False
    lock = nullcontext()

    def __init__(self) -> None:
        self.running = self.waiting = 0

    def totals(self) -> tuple[int, int]:
        return self.running, self.waiting

    def add(self, running: int, waiting: int) -> None:
        self.running += running
        self.waiting += waiting


class Admission:
    """Admission of requests that each need `units` engine slots (their number of choices), in order of priority
    (lower first, vLLM's convention), then of arrival.

    The counts (units running, requests waiting) live in `slots`: this process's own, or shared by every API
    server of `trtpipe serve --api-servers N`, so the bounds are global. Requests queue in the process they
    reached; a new request never goes ahead of one waiting in any process, and `priority` orders each process's
    own queue (not the queues of the other API servers). A process only learns
    that another one freed a slot by looking, so while it has requests waiting it looks every POLL_S."""

    POLL_S = 0.005

    def __init__(self, max_running: int, max_waiting: int, retry_after_s: int = 1, slots=None):
        self.max_running, self.max_waiting, self.retry_after_s = max(1, max_running), max(0, max_waiting), retry_after_s
        self.slots = slots if slots is not None else LocalSlots()
        # (priority, arrival number, units, future), kept sorted: the head is the next to admit.
        self._waiters: list[tuple[int, int, int, asyncio.Future]] = []
        self._arrivals = itertools.count()
        self._poll: asyncio.TimerHandle | None = None

    @property
    def num_running(self) -> int:  # units, every process
        return self.slots.totals()[0]

    @property
    def num_waiting(self) -> int:  # requests, every process
        return self.slots.totals()[1]

    def try_acquire(self, units: int, priority: int = 0) -> asyncio.Future | None:
        """None: admitted now. A future: queued (by priority, then arrival), resolved when admitted; await it
        with `wait`, or give it up with `abandon`. Raises a 429 RequestError when the queue is full."""
        units = min(units, self.max_running)
        slots = self.slots
        with slots.lock:
            running, waiting = slots.totals()
            if not waiting and running + units <= self.max_running:
                slots.add(units, 0)
                return None
            if waiting >= self.max_waiting:
                raise errors.overloaded(f"{running} running, {waiting} waiting", self.retry_after_s)
            slots.add(0, 1)
        future = asyncio.get_running_loop().create_future()
        bisect.insort(self._waiters, (priority, next(self._arrivals), units, future), key=lambda w: w[:2])
        self._watch()
        return future

    async def wait(self, future: asyncio.Future, units: int) -> None:
        try:
            await future
        except asyncio.CancelledError:
            self.abandon(future, units)
            raise

    def abandon(self, future: asyncio.Future, units: int) -> None:
        """Leave the queue; if admitted just now, give the slot back."""
        if future.done() and not future.cancelled():
            self.release(units)
            return
        future.cancel()
        before = len(self._waiters)
        self._waiters = [w for w in self._waiters if w[3] is not future]
        if len(self._waiters) < before:
            with self.slots.lock:
                self.slots.add(0, -1)
            self._admit_waiting()  # the next in line may fit where the one that left did not

    def release(self, units: int) -> None:
        with self.slots.lock:
            self.slots.add(-min(units, self.max_running), 0)
        self._admit_waiting()

    def _admit_waiting(self) -> None:
        slots = self.slots
        while self._waiters:
            _, _, units, future = self._waiters[0]
            if future.done():  # cancelled; its task has not run `abandon` yet, and now will not find it here
                self._waiters.pop(0)
                with slots.lock:
                    slots.add(0, -1)
                continue
            with slots.lock:
                running, _ = slots.totals()
                if running + units > self.max_running:
                    break
                slots.add(units, -1)
            self._waiters.pop(0)
            future.set_result(None)
        self._watch()

    def _watch(self) -> None:
        if self.slots.shared and self._waiters and self._poll is None:
            self._poll = asyncio.get_running_loop().call_later(self.POLL_S, self._poll_tick)

    def _poll_tick(self) -> None:
        self._poll = None
        self._admit_waiting()


class Ticket:
    """An admitted (or queued) request: its task, and why it was ended from outside, if it was."""

    __slots__ = ("task", "abort_error", "disconnected", "closed", "_timer")

    def __init__(self, task: asyncio.Task):
        self.task = task
        self.abort_error: RequestError | None = None
        self.disconnected = False
        self.closed = False  # generation is over: nothing left to end
        self._timer: asyncio.TimerHandle | None = None

    @property
    def _ended(self) -> bool:
        return self.closed or self.disconnected or self.abort_error is not None

    def abort(self, error: RequestError) -> None:
        if not self._ended:
            self.abort_error = error
            self.task.cancel()

    def client_gone(self) -> None:
        if not self._ended:
            self.disconnected = True
            self.task.cancel()

    def set_deadline(self, seconds: float | None) -> None:
        if seconds:
            self._timer = asyncio.get_running_loop().call_later(seconds, self._deadline_passed, seconds)

    def _deadline_passed(self, seconds: float) -> None:
        self.abort(errors.deadline_exceeded(seconds))

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()


class Inflight:
    """Every request being served, so that a drain can wait for them and end the rest."""

    def __init__(self) -> None:
        self.tickets: set[Ticket] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def add(self, ticket: Ticket) -> None:
        self.tickets.add(ticket)
        self._idle.clear()

    def remove(self, ticket: Ticket) -> None:
        self.tickets.discard(ticket)
        ticket.close()
        if not self.tickets:
            self._idle.set()

    async def wait_idle(self, timeout_s: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    def abort_all(self, error: RequestError) -> int:
        tickets = list(self.tickets)
        for t in tickets:
            t.abort(error)
        return len(tickets)
