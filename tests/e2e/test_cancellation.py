"""A client that goes away cancels its Triton requests: the engine's active-request and KV-block gauges
(Triton's own /metrics) return to idle long before the generation could have finished, streaming or not."""

from __future__ import annotations

import textwrap
import time

import httpx
import pytest

from tests.e2e.helpers import kill_streaming_client, wait_engine_idle

pytestmark = pytest.mark.e2e
# 16 choices x 512 tokens: long enough that finishing it takes several seconds. It must outlast one scrape of
# Triton's /metrics, which on a 2-core machine with the engine saturating both cores sometimes takes 0.5-2.5 s:
# with 4 choices (2.3 s) the first scrape could return only after the generation had ended.
LONG = {"model": "tiny-llama", "prompt": "Tell me everything about robots.", "max_tokens": 512, "n": 16,
        "temperature": 0, "ignore_eos": True}

CLIENT = textwrap.dedent("""
    import sys, time
    from openai import OpenAI
    client = OpenAI(base_url=sys.argv[1], api_key="x", max_retries=0)
    stream = client.completions.create(model="tiny-llama", prompt="Tell me everything about robots.", n=16,
                                       max_tokens=512, temperature=0, stream=True, extra_body={"ignore_eos": True})
    t0 = time.monotonic()
    for i, chunk in enumerate(stream):
        if i == 2:
            print("STREAMING", flush=True)
    print("END", i, time.monotonic() - t0, flush=True)
""")


@pytest.fixture(scope="module")
def full_s(frontend, triton) -> float:
    """How long LONG takes when nobody cancels it (the yardstick for 'cancelled, not finished')."""
    wait_engine_idle(triton.ports.metrics)
    t0 = time.monotonic()
    out = httpx.post(f"{frontend}/completions", json=LONG, timeout=120).json()
    assert out["usage"]["completion_tokens"] == 16 * 512
    return time.monotonic() - t0


def test_a_streaming_client_killed_mid_stream_cancels_its_engine_requests(frontend, triton, full_s):
    idle, elapsed = kill_streaming_client(CLIENT, frontend, triton.ports.metrics)
    assert idle["num_active_requests"] == 0 and idle["kv_blocks_used"] == 0, idle
    assert elapsed < 0.5 * full_s, (elapsed, full_s)  # most of the generation was still ahead


def test_a_non_streaming_client_that_disconnects_cancels_its_engine_requests(frontend, triton, full_s):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{frontend}/completions", json=LONG, timeout=httpx.Timeout(10, read=0.2 * full_s))
    t0 = time.monotonic()  # the client has hung up
    idle = wait_engine_idle(triton.ports.metrics)
    assert idle["num_active_requests"] == 0 and idle["kv_blocks_used"] == 0, idle
    assert time.monotonic() - t0 < 0.5 * full_s, full_s


def test_closing_a_stream_early_cancels_and_frees_the_slot(frontend, triton, full_s):
    with httpx.stream("POST", f"{frontend}/completions", json={**LONG, "stream": True}, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                break
    t0 = time.monotonic()
    idle = wait_engine_idle(triton.ports.metrics)
    assert idle["num_active_requests"] == 0 and idle["kv_blocks_used"] == 0, idle
    assert time.monotonic() - t0 < 0.5 * full_s
    metrics = httpx.get(frontend.removesuffix("/v1") + "/metrics").text
    assert 'trtpipe_num_requests_running{model="tiny-llama"} 0.0' in metrics
    assert 'vllm:request_success_total{finished_reason="abort",model_name="tiny-llama"}' in metrics


def test_a_stop_string_cancels_the_rest_of_the_generation(frontend, triton):
    body = {**LONG, "n": 1}
    full = httpx.post(f"{frontend}/completions", json={**body, "max_tokens": 30}, timeout=60).json()
    text = full["choices"][0]["text"]
    out = httpx.post(f"{frontend}/completions", json={**body, "stop": [text[5:8]]}, timeout=60).json()
    assert out["choices"][0]["finish_reason"] == "stop" and out["usage"]["completion_tokens"] < 30
    assert wait_engine_idle(triton.ports.metrics)["num_active_requests"] == 0
