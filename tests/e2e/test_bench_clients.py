"""The clients of bench/baseline.py's interleaved TTFT comparison (trtpipe.bench.ttft_pairs), against the real
frontend and Triton: a wrong chunked-body parse or a connection that is not kept alive fails here."""

from __future__ import annotations

import grpc
import pytest

from trtpipe.bench.ttft_pairs import KINDS, LeanHttp, lean_grpc_ttft, paired_ttft
from trtpipe.serve.engine_client import EngineCall, stream_infer_callable

pytestmark = pytest.mark.e2e

BODY = {"model": "tiny-llama", "prompt": "Tell me about robots", "max_tokens": 12, "temperature": 0.0,
        "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}


async def test_lean_http_reads_whole_responses_on_one_kept_alive_connection(frontend):
    client = LeanHttp(frontend)
    try:
        first = await client.stream_ttft("/completions", BODY)
        connection = client._writer
        second = await client.stream_ttft("/completions", {**BODY, "prompt": "Something else entirely"})
        assert client._writer is connection and not connection.is_closing()
    finally:
        await client.close()
    assert first > 0 and second > 0


async def test_lean_http_raises_on_an_error_status(frontend):
    client = LeanHttp(frontend)
    try:
        with pytest.raises(RuntimeError, match="404"):
            await client.stream_ttft("/completions", {**BODY, "model": "no-such-model"})
    finally:
        await client.close()


async def test_lean_grpc_times_the_first_tokens(triton):
    channel = grpc.aio.insecure_channel(triton.grpc_url)
    try:
        call = EngineCall(input_ids=[5, 6, 7, 8], max_new_tokens=4, temperature=0.0, min_tokens=4)
        assert await lean_grpc_ttft(stream_infer_callable(channel), "tiny-llama-engine", call) > 0
    finally:
        await channel.close()


async def test_paired_ttft_runs_every_kind_once_per_iteration():
    order: list[str] = []

    def sender(kind: str, seconds: float):
        async def send(i: int) -> float:
            order.append(kind)
            return seconds + i * 1e-3
        return send

    senders = {k: sender(k, s) for k, s in zip(KINDS, (0.020, 0.018, 0.019, 0.0185))}
    result = await paired_ttft(senders, iterations=3, seed=1)
    assert all(sorted(order[4 * i:4 * i + 4]) == sorted(KINDS) for i in range(3))
    assert result.p50_ms("httpx") == pytest.approx(21.0)
    assert result.added_ms("httpx", "tritonclient") == pytest.approx(2.0)
    assert result.added_ms("lean-http", "lean-grpc") == pytest.approx(0.5)
    assert result.added_ms("lean-http", "tritonclient") == pytest.approx(1.0)
    assert result.paired_added_ms("httpx", "tritonclient") == pytest.approx(2.0)
    assert result.to_json()["num_samples"] == {k: 3 for k in KINDS}
