"""Admission over counts shared by several API-server processes (serve.process.shared_limits): two workers' views of
one SharedCounters in this process (the rows a spawned worker would write), plus one real spawned process."""

from __future__ import annotations

import asyncio
import copy
import multiprocessing

import pytest

from trtpipe.serve.api.admission import Admission
from trtpipe.serve.errors import RequestError
from trtpipe.serve.process.shared_limits import SharedCounters


def workers(n: int = 2, window_rounds: int = 64) -> list[SharedCounters]:
    counters = SharedCounters(n, max_models=4, window_rounds=window_rounds)
    views = []
    for i in range(n):
        view = copy.copy(counters)  # the same shared memory and lock; its own row, as in a spawned worker
        view.worker, view._slot_of = i, {}
        views.append(view)
    return views


def admissions(views, max_running=2, max_waiting=1) -> list[Admission]:
    return [Admission(max_running, max_waiting, slots=v.slots("m")) for v in views]


async def test_the_bounds_count_every_workers_requests():
    a, b = admissions(workers())
    assert a.try_acquire(1) is None and b.try_acquire(1) is None  # running 2 of 2, one in each worker
    queued = b.try_acquire(1)  # waiting 1 of 1
    assert queued is not None and (a.num_running, a.num_waiting) == (2, 1)
    with pytest.raises(RequestError) as err:
        a.try_acquire(1)  # would be admitted by a bound of 2 per worker
    assert err.value.status == 429 and err.value.headers == {"Retry-After": "1"}
    b.abandon(queued, 1)
    assert (a.num_running, a.num_waiting) == (2, 0)


async def test_a_slot_freed_in_one_worker_admits_the_request_waiting_in_the_other():
    a, b = admissions(workers(), max_running=1, max_waiting=2)
    assert a.try_acquire(1) is None
    waiter = asyncio.ensure_future(b.wait(b.try_acquire(1), 1))
    late = a.try_acquire(1)  # a slot is not free, and b's waiter is first in line anyway
    assert late is not None
    a.abandon(late, 1)
    a.release(1)  # b is not told; it looks again every POLL_S while it has requests waiting
    await asyncio.wait_for(waiter, 1.0)
    assert (b.num_running, b.num_waiting) == (1, 0)
    b.release(1)
    assert b.num_running == 0


async def test_different_models_have_their_own_counts():
    view = workers(1)[0]
    m1, m2 = Admission(1, 0, slots=view.slots("m1")), Admission(1, 0, slots=view.slots("m2"))
    assert m1.try_acquire(1) is None and m2.try_acquire(1) is None
    with pytest.raises(RequestError):
        m1.try_acquire(1)


def hold_two_units_and_die(counters: SharedCounters) -> None:
    counters.worker = 1
    Admission(4, 0, slots=counters.slots("m")).try_acquire(2)  # never released: the process just ends


def test_a_dead_workers_units_are_freed_when_its_row_is_cleared():
    counters = SharedCounters(2, max_models=4)
    child = multiprocessing.get_context("spawn").Process(target=hold_two_units_and_die, args=(counters,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    slots = counters.slots("m")  # found by name: the child registered it
    assert slots.totals() == (2, 0)
    assert counters.clear_worker(1)
    assert slots.totals() == (0, 0)


def test_speculation_turned_off_by_one_workers_low_acceptance_is_off_in_every_worker():
    from trtpipe.serve.engine_client.speculation import OFF_ACCEPTANCE, ON, AdaptiveSpeculation, SpeculationConfig

    config = SpeculationConfig(threshold=0.6, window_rounds=4, min_rounds=2)
    a_view, b_view = workers(window_rounds=4)
    a = AdaptiveSpeculation(config, a_view.window("m"))
    b = AdaptiveSpeculation(config, b_view.window("m"))
    for _ in range(2):
        a.record(4, 0)
    assert a.state == b.state == OFF_ACCEPTANCE and b.acceptance_rate == 0.0
    for _ in range(4):  # good rounds in b push a's bad ones out of the shared 4-round window
        b.record(4, 4)
    assert a.state == b.state == ON and a.acceptance_rate == 1.0
