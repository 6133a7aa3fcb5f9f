"""Several Triton replicas behind one frontend: least-outstanding-requests balancing, health, failover.

Two facts per replica:
- `reachable`: the server answers (ServerLive) and no request failed to connect since. Requests go to the
  reachable replica with the fewest requests in flight.
- `healthy`: reachable, and a one-token canary generation on every served engine model succeeded (or real
  traffic proved it alive since the last check). Readiness is "some replica is healthy".
NOTE: server *readiness* is not used: Triton reports not-ready while any model loads, e.g. during a publish,
when every other model still serves.

A request whose replica fails before it produced anything is retried on another replica; one that fails
mid-stream ends with an error (its tokens cannot be replayed). gRPC reconnects by itself (with short backoff),
and the health loop notices when a replica is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Awaitable, Callable

from trtpipe.serve.engine_client.calls import EngineCall, EngineUnavailable, EngineUnreachable, Final, TokenDelta
from trtpipe.serve.engine_client.client import TritonEngineClient

log = logging.getLogger("trtpipe.serve")


class Replica:
    def __init__(self, url: str):
        self.url = url
        self.client = TritonEngineClient(url)
        self.reachable: bool | None = None  # None: not checked yet (eligible, so start-up does not 503)
        self.healthy: bool | None = None
        self.num_outstanding = 0
        self.last_error: str | None = None
        self._seen_responses = 0
        self._last_canary = float("-inf")

    @property
    def eligible(self) -> bool:
        return self.reachable is not False

    def mark_unreachable(self, reason: str) -> None:
        if self.reachable is not False:
            log.warning("Triton replica %s is unreachable: %s", self.url, reason)
        self.reachable, self.healthy, self.last_error = False, False, reason

    def mark_unhealthy(self, reason: str) -> None:
        if self.healthy is not False:
            log.warning("Triton replica %s is not ready: %s", self.url, reason)
        self.healthy, self.last_error = False, reason


class ReplicaPool:
    def __init__(self, urls: list[str]):
        if not urls:
            raise ValueError("at least one Triton replica is needed")
        self.replicas = [Replica(u) for u in urls]

    @property
    def any_healthy(self) -> bool:
        return any(r.healthy for r in self.replicas)

    def pick(self, exclude: tuple[Replica, ...] = ()) -> Replica | None:
        best = None
        for r in self.replicas:
            if r.eligible and r not in exclude and (best is None or r.num_outstanding < best.num_outstanding):
                best = r
        return best

    async def generate(self, model: str, call: EngineCall, outputs: tuple[str, ...],
                       pin: list | None = None) -> AsyncIterator[TokenDelta | Final]:
        """Stream one engine request. `pin` (a one-element list) keeps related calls (the rounds of a
        speculative request, the n choices of one prompt) on one replica, where their prefix is cached."""
        tried: tuple[Replica, ...] = ()
        error: EngineUnavailable | None = None
        while True:
            replica = pin[0] if pin and pin[0] is not None and pin[0].eligible and pin[0] not in tried else None
            replica = replica or self.pick(tried)
            if replica is None:
                if error is not None and not isinstance(error, EngineUnreachable):
                    raise error
                raise EngineUnavailable("no Triton replica is reachable" + (f" ({error})" if error else ""))
            if pin is not None:
                pin[0] = replica
            replica.num_outstanding += 1
            produced = False
            try:
                async for event in replica.client.generate(model, call, outputs):
                    produced = True
                    yield event
                return
            except EngineUnavailable as e:
                if isinstance(e, EngineUnreachable):
                    replica.mark_unreachable(str(e))
                if produced:
                    raise
                tried, error = tried + (replica,), e  # nothing was streamed yet: fail over
            finally:
                replica.num_outstanding -= 1

    async def check(self, replica: Replica, canary_models: list[tuple[str, int]], canary_interval_s: float,
                    timeout_s: float) -> None:
        """One health check: reachability, then (when due, or while unhealthy, and unless traffic proved the
        replica alive since the last check) a one-token canary per model."""
        if not await replica.client.is_live(timeout_s):
            replica.mark_unreachable("the server does not answer")
            return
        if replica.reachable is False:
            log.info("Triton replica %s is reachable again", replica.url)
        replica.reachable = True
        now = time.monotonic()
        traffic = replica.client.num_responses != replica._seen_responses
        replica._seen_responses = replica.client.num_responses
        if replica.healthy and (traffic or now - replica._last_canary < canary_interval_s):
            return
        async def canaries() -> None:
            for model, token_id in canary_models:
                call = EngineCall(input_ids=[token_id], max_new_tokens=1, temperature=0.0)
                async for _ in replica.client.generate(model, call):
                    pass

        try:
            await asyncio.wait_for(canaries(), timeout_s)  # not asyncio.timeout(): Python 3.10
        except EngineUnreachable as e:
            replica.mark_unreachable(str(e))
            return
        except asyncio.TimeoutError:
            replica.mark_unhealthy(f"the canary generation took over {timeout_s:g} s")
            return
        except Exception as e:  # noqa: BLE001 - any failure of the canary means not ready
            replica.mark_unhealthy(f"canary generation failed: {e}")
            return
        replica._last_canary, replica._seen_responses = now, replica.client.num_responses
        if replica.healthy is not True:
            log.info("Triton replica %s is healthy", replica.url)
        replica.healthy, replica.last_error = True, None

    async def run_health_checks(self, canary_models: Callable[[], Awaitable[list[tuple[str, int]]]],
                                interval_s: float, canary_interval_s: float, timeout_s: float) -> None:
        while True:
            models = await canary_models()
            await asyncio.gather(*(self.check(r, models, canary_interval_s, timeout_s) for r in self.replicas))
            await asyncio.sleep(interval_s)

    def gauges(self):
        for r in self.replicas:
            labels = {"replica": r.url}
            yield "trtpipe_replica_healthy", "1 if the Triton replica passed its last health check", labels, \
                float(bool(r.healthy))
            yield "trtpipe_replica_outstanding_requests", "Engine requests in flight on the replica", labels, \
                float(r.num_outstanding)

    async def close(self) -> None:
        for r in self.replicas:
            await r.client.close()
