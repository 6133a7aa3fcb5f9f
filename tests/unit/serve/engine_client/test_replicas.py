"""Balancing, failover and health checks of the replica pool, with fake Triton clients."""

from __future__ import annotations

import pytest

from trtpipe.serve.engine_client import (EngineCall, EngineError, EngineUnavailable, EngineUnreachable, Final,
                                         TokenDelta)
from trtpipe.serve.engine_client.replicas import ReplicaPool


class FakeClient:
    def __init__(self, fail_after: int | None = None, ready: bool = True, error=EngineUnreachable("down")):
        self.fail_after, self.ready, self.error = fail_after, ready, error
        self.calls = 0
        self.num_responses = 0

    async def is_live(self, timeout_s):
        return self.ready

    async def generate(self, model, call, outputs=()):
        self.calls += 1
        for i in range(call.max_new_tokens):
            if self.fail_after is not None and i >= self.fail_after:
                raise self.error
            self.num_responses += 1
            yield TokenDelta([i], None)
        yield Final(call.max_new_tokens)


def pool_of(*clients) -> ReplicaPool:
    pool = ReplicaPool([f"r{i}:1" for i in range(len(clients))])
    for r, c in zip(pool.replicas, clients):
        r.client = c
    return pool


async def drain(agen) -> list:
    return [ev async for ev in agen]


async def test_new_requests_go_to_the_replica_with_fewest_outstanding():
    pool = pool_of(FakeClient(), FakeClient())
    a, b = pool.replicas
    a.num_outstanding = 3
    assert pool.pick() is b
    b.num_outstanding = 5
    assert pool.pick() is a
    a.reachable = False
    assert pool.pick() is b


async def test_a_replica_that_fails_before_any_token_is_failed_over_and_marked_down():
    dead, alive = FakeClient(fail_after=0), FakeClient()
    pool = pool_of(dead, alive)
    events = await drain(pool.generate("m", EngineCall([1], 3), ()))
    assert [e.token_ids for e in events if isinstance(e, TokenDelta)] == [[0], [1], [2]]
    assert pool.replicas[0].reachable is False and dead.calls == 1 and alive.calls == 1
    assert all(r.num_outstanding == 0 for r in pool.replicas)


async def test_a_failure_mid_stream_is_not_replayed_and_no_replica_left_is_a_503():
    pool = pool_of(FakeClient(fail_after=2))
    with pytest.raises(EngineUnavailable):
        await drain(pool.generate("m", EngineCall([1], 5), ()))
    with pytest.raises(EngineUnavailable, match="no Triton replica"):
        await drain(pool.generate("m", EngineCall([1], 5), ()))


async def test_an_engine_error_is_not_a_reason_to_mark_the_replica_down():
    pool = pool_of(FakeClient(fail_after=0, error=EngineError("bad request")))
    with pytest.raises(EngineError):
        await drain(pool.generate("m", EngineCall([1], 5), ()))
    assert pool.replicas[0].reachable is None


async def test_a_model_missing_on_one_replica_fails_over_without_marking_the_replica_unreachable():
    pool = pool_of(FakeClient(fail_after=0, error=EngineUnavailable("unknown model")), FakeClient())
    events = await drain(pool.generate("m", EngineCall([1], 2), ()))
    assert len(events) == 3 and pool.replicas[0].reachable is None
    alone = pool_of(FakeClient(fail_after=0, error=EngineUnavailable("unknown model")))
    with pytest.raises(EngineUnavailable, match="unknown model"):
        await drain(alone.generate("m", EngineCall([1], 2), ()))


async def test_pinned_calls_stay_on_one_replica():
    a, b = FakeClient(), FakeClient()
    pool = pool_of(a, b)
    pin = [None]
    for _ in range(4):
        await drain(pool.generate("m", EngineCall([1], 1), (), pin))
    assert sorted((a.calls, b.calls)) == [0, 4]


async def test_health_check_needs_ready_and_a_canary_and_traffic_stands_in_for_the_canary():
    client = FakeClient()
    pool = pool_of(client)
    replica = pool.replicas[0]
    await pool.check(replica, [("m", 0)], canary_interval_s=100, timeout_s=1)
    assert replica.healthy is True and client.calls == 1  # the canary ran
    await pool.check(replica, [("m", 0)], canary_interval_s=100, timeout_s=1)
    assert client.calls == 1  # not due yet
    client.ready = False
    await pool.check(replica, [("m", 0)], canary_interval_s=0, timeout_s=1)
    assert replica.healthy is False and not pool.any_healthy
    client.ready, client.fail_after, client.error = True, 0, EngineUnavailable("model is loading")
    await pool.check(replica, [("m", 0)], canary_interval_s=0, timeout_s=1)
    assert replica.healthy is False and replica.reachable is True and "canary" in replica.last_error
    client.fail_after = None
    await pool.check(replica, [("m", 0)], canary_interval_s=0, timeout_s=1)
    assert replica.healthy is True
    gauges = {name: v for name, _, _, v in pool.gauges()}
    assert gauges["trtpipe_replica_healthy"] == 1.0
