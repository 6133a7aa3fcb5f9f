"""Two real Triton processes behind one frontend: balancing, failover when one dies under load, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from tests.e2e.helpers import running_frontend, settings_for

pytestmark = pytest.mark.e2e


def requests_served(triton) -> float:
    text = httpx.get(f"http://127.0.0.1:{triton.ports.metrics}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith('nv_inference_request_success{model="tiny-llama-engine"'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_replica(url: str, replica, healthy: bool, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if httpx.get(url.removesuffix("/v1") + "/health/ready").json()["replicas"][replica.grpc_url] is healthy:
            return
        time.sleep(0.1)
    raise AssertionError(f"replica {replica.grpc_url} never became healthy={healthy}")


async def _stream(client: AsyncOpenAI, i: int, max_tokens: int) -> str:
    stream = await client.completions.create(model="tiny-llama", prompt=f"Replica test {i}", max_tokens=max_tokens,
                                             temperature=0, stream=True, extra_body={"ignore_eos": True})
    return "".join([c.choices[0].text async for c in stream if c.choices])


async def test_one_of_two_replicas_killed_under_load(triton, replica_triton, built_repo):
    from trtpipe.serve.process.launcher import TritonServer

    settings = settings_for(triton, built_repo, triton_urls=(triton.grpc_url, replica_triton.grpc_url),
                            health_timeout_s=2.0)
    restarted = None
    with running_frontend(settings) as url:
        client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        # Least outstanding requests: concurrent requests spread over both replicas.
        a0, b0 = requests_served(triton), requests_served(replica_triton)
        await asyncio.gather(*(_stream(client, i, 8) for i in range(8)))
        assert requests_served(triton) - a0 >= 2 and requests_served(replica_triton) - b0 >= 2

        # Kill replica B while 12 streams run on the two replicas.
        load = asyncio.gather(*(_stream(client, i, 200) for i in range(12)), return_exceptions=True)
        await asyncio.sleep(0.5)
        os.killpg(replica_triton.process.pid, signal.SIGKILL)
        replica_triton.process.wait(10)
        results = await load
        failed = [r for r in results if isinstance(r, BaseException)]
        # Streams that were on B end with a clean SSE error event (their tokens cannot be replayed elsewhere);
        # none hangs, none is a 500. The ones on A finish.
        assert all(isinstance(r, openai.APIError) and r.body["code"] == "engine_unavailable" for r in failed), failed
        assert 0 < len(failed) < 12

        # New requests fail over to A at once and all succeed; readiness holds (one replica is healthy).
        after = await asyncio.gather(*(_stream(client, 100 + i, 8) for i in range(8)))
        assert all(after)
        wait_replica(url, replica_triton, False)
        assert httpx.get(url.removesuffix("/v1") + "/health/ready").status_code == 200

        # Restart B on the same ports: the health loop reconnects by itself and B gets traffic again.
        restarted = TritonServer(built_repo, replica_triton.ports, log_path=replica_triton.log_path, exit_timeout_s=2)
        try:
            restarted.start()
            wait_replica(url, restarted, True)
            b1 = requests_served(restarted)
            await asyncio.gather(*(_stream(client, 200 + i, 8) for i in range(8)))
            assert requests_served(restarted) - b1 >= 2
        finally:
            restarted.stop()
