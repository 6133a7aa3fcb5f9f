"""Bounded running and queued requests (429 + Retry-After), keep-alives while queued, per-request deadlines
(504), and an unreachable Triton (503, not ready)."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai import OpenAI

from tests.conftest import free_port
from tests.e2e.helpers import running_frontend, settings_for, wait_engine_idle

pytestmark = pytest.mark.e2e
LONG = {"model": "tiny-llama", "prompt": "Tell me everything about robots.", "max_tokens": 400, "temperature": 0,
        "ignore_eos": True, "stream": True}


def _first_data_line(lines) -> tuple[list[str], str]:
    seen = []
    for line in lines:
        if line.startswith("data: "):
            return seen, line
        if line:
            seen.append(line)
    raise AssertionError("the stream ended without data")


def test_beyond_the_queue_bound_requests_get_429_with_retry_after(triton, built_repo):
    settings = settings_for(triton, built_repo, max_running=1, max_waiting=1, keepalive_s=0.2)
    with running_frontend(settings) as url, httpx.Client(timeout=30) as http:
        # 16 choices of 400 tokens: busy for a good while on any machine (units are capped at max_running).
        with http.stream("POST", f"{url}/completions", json={**LONG, "n": 16}) as running:
            running_lines = running.iter_lines()  # keep a reference: a dropped iterator closes the response
            _, first = _first_data_line(running_lines)
            assert first.startswith("data: {") and "error" not in first, first
            with http.stream("POST", f"{url}/completions", json={**LONG, "max_tokens": 4}) as queued:
                assert queued.status_code == 200  # admitted to the queue: the stream starts with keep-alives
                lines = queued.iter_lines()
                assert next(lines) == ": keep-alive"
                metrics = http.get(url.removesuffix("/v1") + "/metrics").text
                assert 'vllm:num_requests_waiting{model_name="tiny-llama"} 1.0' in metrics
                assert 'vllm:num_requests_running{model_name="tiny-llama"} 1.0' in metrics
                client = OpenAI(base_url=url, api_key="x", max_retries=0)
                with pytest.raises(openai.RateLimitError) as err:
                    client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2)
                assert err.value.response.headers["retry-after"] == "1"
                assert err.value.body["code"] == "rate_limit_exceeded" and err.value.body["type"] == "rate_limit_error"
                running.close()  # frees the slot: the queued request runs
                comments, data = _first_data_line(lines)
                assert set(comments) <= {": keep-alive"} and data.startswith("data: {")
                assert [line for line in lines if line.startswith("data: ")][-1] == "data: [DONE]"
        assert client.completions.create(model="tiny-llama", prompt="hi", max_tokens=2).usage.completion_tokens >= 1
        errors = http.get(url.removesuffix("/v1") + "/metrics").text
        assert 'trtpipe_request_errors_total{model="",status="429",type="rate_limit_error"} 1.0' in errors


def test_a_request_past_its_deadline_gets_504_or_an_error_event(triton, built_repo):
    # The streamed case needs its first chunk within the 0.3 s deadline: start with an engine that earlier tests'
    # requests no longer occupy.
    wait_engine_idle(triton.ports.metrics)
    with running_frontend(settings_for(triton, built_repo, request_timeout_s=0.3)) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        t0 = time.monotonic()
        with pytest.raises(openai.APIStatusError) as err:
            client.completions.create(model="tiny-llama", prompt="go", max_tokens=500, n=8,
                                      extra_body={"ignore_eos": True})
        assert err.value.status_code == 504 and err.value.body["code"] == "deadline_exceeded"
        assert time.monotonic() - t0 < 5
        stream = client.completions.create(model="tiny-llama", prompt="go", max_tokens=500, n=8, stream=True,
                                           extra_body={"ignore_eos": True})
        received = 0
        with pytest.raises(openai.APIError) as err:
            for _ in stream:
                received += 1
        assert received > 0 and err.value.body["code"] == "deadline_exceeded"
        with httpx.stream("POST", f"{url}/completions", json={**LONG, "max_tokens": 500, "n": 8}, timeout=30) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: ")]
        assert '"deadline_exceeded"' in lines[-2] and lines[-1] == "data: [DONE]"
    assert wait_engine_idle(triton.ports.metrics)["num_active_requests"] == 0


def test_with_triton_unreachable_requests_get_503_and_readiness_is_false(built_repo, triton):
    dead = f"127.0.0.1:{free_port()}"
    settings = settings_for(triton, built_repo, triton_grpc_url=dead, health_timeout_s=0.5)
    with running_frontend(settings, wait_ready=False) as url:
        root = url.removesuffix("/v1")
        time.sleep(0.5)
        ready = httpx.get(f"{root}/health/ready")
        assert ready.status_code == 503 and ready.json()["ready"] is False
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError) as err:
            client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 503 and err.value.body["type"] == "service_unavailable"
        assert err.value.response.headers["retry-after"] == "1"
        with pytest.raises(openai.InternalServerError):
            list(client.completions.create(model="tiny-llama", prompt="hi", stream=True))
        assert httpx.get(f"{root}/health/live").status_code == 200
        assert httpx.get(f"{root}/health").status_code == 503  # vLLM's route: no engine answers
        assert httpx.head(f"{root}/health").status_code == 503
