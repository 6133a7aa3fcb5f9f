"""/metrics as Prometheus and vLLM dashboards read it: exact names, labels, and counts that match usage."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests.e2e.helpers import metric_lines

pytestmark = pytest.mark.e2e
M = '{model_name="tiny-llama"}'


def test_vllm_names_appear_exactly_and_count_what_the_client_got(frontend):
    client = OpenAI(base_url=frontend, api_key="x", max_retries=0)
    before = metric_lines(frontend, "vllm:")
    out = client.completions.create(model="tiny-llama", prompt="Count me", max_tokens=9, temperature=0,
                                    extra_body={"ignore_eos": True})
    chunks = list(client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}],
                                                 max_tokens=5, temperature=0, stream=True,
                                                 stream_options={"include_usage": True},
                                                 extra_body={"ignore_eos": True}))
    after = metric_lines(frontend, "vllm:")

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    assert delta(f"vllm:generation_tokens_total{M}") == 9 + 5
    assert delta(f"vllm:prompt_tokens_total{M}") == out.usage.prompt_tokens + chunks[-1].usage.prompt_tokens
    assert delta('vllm:request_success_total{finished_reason="length",model_name="tiny-llama"}') == 2
    for hist in ("vllm:time_to_first_token_seconds", "vllm:e2e_request_latency_seconds",
                 "vllm:request_queue_time_seconds", "vllm:request_prompt_tokens", "vllm:request_generation_tokens"):
        assert delta(f"{hist}_count{M}") == 2, hist
    # Inter-chunk gaps are what a streaming client sees: only the streamed request's (5 chunks, 4 gaps).
    assert 1 <= delta(f"vllm:inter_token_latency_seconds_count{M}") <= 4
    assert delta(f"vllm:request_time_per_output_token_seconds_count{M}") == 2
    assert f'vllm:time_to_first_token_seconds_bucket{{le="0.1",model_name="tiny-llama"}}' in after
    assert after[f"vllm:num_requests_running{M}"] == 0 and after[f"vllm:num_requests_waiting{M}"] == 0
    text = httpx.get(frontend.removesuffix("/v1") + "/metrics").text
    assert "# TYPE vllm:time_to_first_token_seconds histogram" in text
    assert "# TYPE vllm:num_requests_waiting gauge" in text
    ours = metric_lines(frontend, "trtpipe_")
    assert ours['trtpipe_generation_tokens_total{model="tiny-llama"}'] == after[f"vllm:generation_tokens_total{M}"]
    assert ours["trtpipe_ready"] == 1
    assert any(k.startswith("trtpipe_replica_healthy{") and v == 1 for k, v in ours.items())


def test_prefix_cache_hits_and_queries_count_prompt_tokens_with_vllm_names(frontend, triton):
    from tests.e2e.helpers import engine_state, wait_engine_idle

    client = OpenAI(base_url=frontend, api_key="x", max_retries=0)
    # 70 random token ids: tiny-llama's blocks hold 32 tokens, so the second call reuses exactly 2 blocks.
    prompt = np.random.default_rng().integers(300, 1000, 70).tolist()
    engine_before = wait_engine_idle(triton.ports.metrics)
    before = metric_lines(frontend, "vllm:prefix_cache")
    for _ in range(2):
        client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=2, temperature=0)
    after = metric_lines(frontend, "vllm:prefix_cache")
    engine_after = wait_engine_idle(triton.ports.metrics)

    def delta(name: str) -> float:
        return after.get(f"{name}_total{M}", 0.0) - before.get(f"{name}_total{M}", 0.0)

    assert delta("vllm:prefix_cache_queries") == 2 * 70
    assert delta("vllm:prefix_cache_hits") == 64
    # The engine's own running totals on Triton's /metrics saw the same hits (its queries also count canaries).
    assert engine_after["prefix_cache_hits"] - engine_before["prefix_cache_hits"] == 64
    assert engine_after["prefix_cache_queries"] - engine_before["prefix_cache_queries"] >= 2 * 70
    assert "# TYPE vllm:prefix_cache_hits_total counter" in httpx.get(frontend.removesuffix("/v1") + "/metrics").text
    assert engine_state(triton.ports.metrics)["prefix_cache_hits"] >= 64
