"""/v1/responses shares the chat routes' serving: a client that goes away cancels its engine requests, admission
bounds give 429, API keys guard every Responses route, and /metrics counts responses as it counts completions."""

from __future__ import annotations

import asyncio
import textwrap
import time

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.e2e.helpers import kill_streaming_client, metric_lines, running_frontend, settings_for, wait_engine_idle

pytestmark = pytest.mark.e2e
NUM_STREAMS = 16
# 16 responses of 512 tokens at once: several seconds of engine work, more than a scrape of Triton's /metrics
# takes on a busy 2-core machine (see test_cancellation.py).
LONG = dict(model="tiny-llama", input="Tell me everything about robots.", max_output_tokens=512, temperature=0,
            extra_body={"ignore_eos": True})
ABORT = 'vllm:request_success_total{finished_reason="abort",model_name="tiny-llama"}'
CLIENT = textwrap.dedent(f"""
    import asyncio, sys
    from openai import AsyncOpenAI
    client = AsyncOpenAI(base_url=sys.argv[1], api_key="x", max_retries=0)
    started = 0

    async def one():
        global started
        stream = await client.responses.create(stream=True, **{LONG!r})
        async for event in stream:
            if event.type == "response.output_text.delta":
                started += 1
                if started == {NUM_STREAMS}:
                    print("STREAMING", flush=True)
                break
        await asyncio.sleep(3600)  # hold the connection open until killed

    async def main():
        await asyncio.gather(*[one() for _ in range({NUM_STREAMS})])

    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def full_s(frontend, triton) -> float:
    """How long the NUM_STREAMS responses take when nobody cancels them."""
    async def all_of_them():
        client = AsyncOpenAI(base_url=frontend, api_key="x", max_retries=0)
        return await asyncio.gather(*[client.responses.create(**LONG) for _ in range(NUM_STREAMS)])

    wait_engine_idle(triton.ports.metrics)
    t0 = time.monotonic()
    responses = asyncio.run(all_of_them())
    assert [r.usage.output_tokens for r in responses] == [512] * NUM_STREAMS
    return time.monotonic() - t0


def test_a_responses_client_killed_mid_stream_cancels_its_engine_requests(frontend, triton, full_s):
    wait_engine_idle(triton.ports.metrics)
    before = metric_lines(frontend, "vllm:request_success_total").get(ABORT, 0.0)
    idle, elapsed = kill_streaming_client(CLIENT, frontend, triton.ports.metrics)
    assert idle["num_active_requests"] == 0 and idle["kv_blocks_used"] == 0, idle
    assert elapsed < 0.5 * full_s, (elapsed, full_s)  # most of the generation was still ahead
    after = metric_lines(frontend, "vllm:")
    assert after[ABORT] - before == NUM_STREAMS
    assert after['vllm:num_requests_running{model_name="tiny-llama"}'] == 0


def test_closing_a_responses_stream_early_frees_its_slot_and_stores_nothing(frontend, triton, client):
    before = metric_lines(frontend, "vllm:request_success_total").get(ABORT, 0.0)
    body = {"model": "tiny-llama", "input": "Tell me everything.", "max_output_tokens": 512, "temperature": 0,
            "ignore_eos": True, "stream": True}
    with httpx.stream("POST", f"{frontend}/responses", json=body, timeout=30) as r:
        lines = r.iter_lines()
        response_id = None
        for line in lines:
            if line.startswith("data: ") and '"response.created"' in line:
                response_id = line.split('"id":"')[1].split('"')[0]
            if line.startswith("data: ") and '"response.output_text.delta"' in line:
                break
    idle = wait_engine_idle(triton.ports.metrics)
    assert idle["num_active_requests"] == 0 and idle["kv_blocks_used"] == 0, idle
    assert metric_lines(frontend, "vllm:request_success_total")[ABORT] - before == 1
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response_id)  # it never finished: nothing was stored


def test_metrics_count_a_response_as_they_count_a_completion(frontend, client):
    def delta(after, before, name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    before = metric_lines(frontend, "vllm:")
    r = client.responses.create(model="tiny-llama", input="Count me.", max_output_tokens=6, temperature=0,
                                extra_body={"ignore_eos": True})
    after = metric_lines(frontend, "vllm:")
    m = '{model_name="tiny-llama"}'
    assert delta(after, before, f"vllm:generation_tokens_total{m}") == r.usage.output_tokens == 6
    assert delta(after, before, f"vllm:prompt_tokens_total{m}") == r.usage.input_tokens
    assert delta(after, before, 'vllm:request_success_total{finished_reason="length",model_name="tiny-llama"}') == 1
    assert delta(after, before, f"vllm:time_to_first_token_seconds_count{m}") == 1


def test_beyond_the_admission_bounds_a_response_gets_429_and_a_queued_one_keeps_alive_then_runs(triton, built_repo):
    settings = settings_for(triton, built_repo, max_running=1, max_waiting=1, keepalive_s=0.2)
    long = {"model": "tiny-llama", "prompt": "Robots.", "max_tokens": 400, "n": 16, "temperature": 0,
            "ignore_eos": True, "stream": True}
    queued_body = {"model": "tiny-llama", "input": "hi", "max_output_tokens": 3, "stream": True}
    with running_frontend(settings) as url, httpx.Client(timeout=30) as http:
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        with http.stream("POST", f"{url}/completions", json=long) as running:
            running_lines = running.iter_lines()  # keep a reference: a dropped iterator closes the response
            assert next(line for line in running_lines if line.startswith("data: ")).startswith("data: {")
            with http.stream("POST", f"{url}/responses", json=queued_body) as queued:
                lines = queued.iter_lines()
                assert queued.status_code == 200 and next(lines) == ": keep-alive"
                with pytest.raises(openai.RateLimitError) as e:
                    client.responses.create(model="tiny-llama", input="hi", max_output_tokens=2)
                assert e.value.response.headers["retry-after"] == "1"
                assert e.value.body["code"] == "rate_limit_exceeded"
                running.close()  # frees the slot: the queued response runs
                events = [line for line in lines if line.startswith("event: ")]
        assert events[:2] == ["event: response.created", "event: response.in_progress"]
        assert events[-1] in ("event: response.completed", "event: response.incomplete")


def test_api_keys_guard_create_retrieve_and_delete(triton, built_repo):
    with running_frontend(settings_for(triton, built_repo, api_keys=("sekret",))) as url:
        good = OpenAI(base_url=url, api_key="sekret", max_retries=0)
        bad = OpenAI(base_url=url, api_key="wrong", max_retries=0)
        r = good.responses.create(model="tiny-llama", input="hi", max_output_tokens=2)
        for call in (lambda: bad.responses.create(model="tiny-llama", input="hi", max_output_tokens=2),
                     lambda: bad.responses.retrieve(r.id), lambda: bad.responses.delete(r.id)):
            with pytest.raises(openai.AuthenticationError) as e:
                call()
            assert e.value.body["code"] == "invalid_api_key"
        assert good.responses.retrieve(r.id).id == r.id


def test_a_response_past_its_deadline_is_a_504_or_ends_with_error_and_response_failed(triton, built_repo):
    with running_frontend(settings_for(triton, built_repo, request_timeout_s=0.3)) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        kw = dict(model="tiny-llama", input="go", max_output_tokens=512, extra_body={"ignore_eos": True})
        with pytest.raises(openai.APIStatusError) as e:
            client.responses.create(**kw)
        assert e.value.status_code == 504 and e.value.body["code"] == "deadline_exceeded"
        events = list(client.responses.create(stream=True, **kw))
    assert [e.type for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2].code == "deadline_exceeded" and events[-2].sequence_number == len(events) - 2
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "server_error" and failed.id == events[0].response.id
    assert "response.output_text.delta" in {e.type for e in events}


def test_allowed_browser_origins_may_delete_a_stored_response(triton, built_repo):
    preflight = {"origin": "https://app.example", "access-control-request-method": "DELETE"}
    with running_frontend(settings_for(triton, built_repo, allowed_origins=("https://app.example",))) as url:
        allowed = httpx.options(f"{url}/responses/resp_1", headers=preflight)
        assert allowed.status_code == 200 and "DELETE" in allowed.headers["access-control-allow-methods"]
