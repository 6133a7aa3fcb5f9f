import asyncio

import pytest

from trtpipe.serve.api.admission import Admission, Inflight, Ticket
from trtpipe.serve.errors import RequestError


async def test_admits_up_to_the_bound_then_queues_fifo_then_refuses_with_retry_after():
    adm = Admission(max_running=2, max_waiting=2, retry_after_s=3)
    assert adm.try_acquire(1) is None and adm.try_acquire(1) is None
    first = asyncio.ensure_future(adm.wait(adm.try_acquire(1), 1))
    second = asyncio.ensure_future(adm.wait(adm.try_acquire(1), 1))
    await asyncio.sleep(0)
    assert adm.num_waiting == 2
    with pytest.raises(RequestError) as err:
        adm.try_acquire(1)
    assert err.value.status == 429 and err.value.headers == {"Retry-After": "3"}
    assert err.value.type == "rate_limit_error" and err.value.code == "rate_limit_exceeded"
    adm.release(1)
    await asyncio.sleep(0)
    assert first.done() and not second.done() and adm.num_running == 2
    adm.release(1)
    await asyncio.sleep(0)
    assert second.done() and adm.num_waiting == 0


async def test_nobody_jumps_the_queue_even_when_a_slot_is_free():
    adm = Admission(max_running=2, max_waiting=4)
    assert adm.try_acquire(2) is None
    big = asyncio.ensure_future(adm.wait(adm.try_acquire(2), 2))
    adm.release(1)
    small = adm.try_acquire(1)
    assert small is not None  # the request of 2 waiting ahead comes first
    adm.abandon(small, 1)
    adm.release(1)
    await asyncio.sleep(0)
    assert big.done() and adm.num_running == 2


async def test_a_cancelled_waiter_leaves_the_queue_and_units_are_capped():
    adm = Admission(max_running=1, max_waiting=1)
    assert adm.try_acquire(5) is None  # n larger than the bound still runs, alone
    assert adm.num_running == 1
    waiter = asyncio.ensure_future(adm.wait(adm.try_acquire(1), 1))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert adm.num_waiting == 0
    adm.release(5)
    assert adm.num_running == 0


async def test_a_deadline_aborts_the_ticket_task_with_a_504():
    async def slow():
        await asyncio.sleep(10)

    task = asyncio.ensure_future(slow())
    ticket = Ticket(task)
    ticket.set_deadline(0.01)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ticket.abort_error.status == 504 and ticket.abort_error.code == "deadline_exceeded"


async def test_a_closed_ticket_can_no_longer_be_aborted_or_disconnected():
    task = asyncio.ensure_future(asyncio.sleep(0.05))
    ticket = Ticket(task)
    ticket.close()
    ticket.abort(RequestError("x"))
    ticket.client_gone()
    await task
    assert ticket.abort_error is None and not ticket.disconnected


async def test_drain_waits_for_requests_then_ends_the_rest():
    inflight = Inflight()
    tasks = [asyncio.ensure_future(asyncio.sleep(s)) for s in (0.01, 10)]
    tickets = [Ticket(t) for t in tasks]
    for t in tickets:
        inflight.add(t)
    tasks[0].add_done_callback(lambda _: inflight.remove(tickets[0]))
    tasks[1].add_done_callback(lambda _: inflight.remove(tickets[1]))
    assert await inflight.wait_idle(0.2) is False
    assert inflight.abort_all(RequestError("bye", status=503)) == 1
    assert await inflight.wait_idle(1.0) is True
    assert tickets[1].abort_error.status == 503 and tickets[0].abort_error is None


async def test_waiting_requests_are_admitted_by_priority_then_arrival():
    adm = Admission(max_running=1, max_waiting=8)
    assert adm.try_acquire(1) is None
    order = []
    queued = {name: adm.try_acquire(1, priority) for name, priority in
              [("late-normal", 0), ("urgent", -5), ("background", 10), ("normal", 0), ("urgent-2", -5)]}
    for name, future in queued.items():
        future.add_done_callback(lambda _, name=name: order.append(name))
    for _ in queued:
        adm.release(1)
        await asyncio.sleep(0)
    assert order == ["urgent", "urgent-2", "late-normal", "normal", "background"]
