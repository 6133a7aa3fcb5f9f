"""Draft-target speculation through the frontend: greedy output identical to decoding without a draft,
acceptance in usage and metrics, and the adaptive switch (low acceptance, large batch)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from openai import AsyncOpenAI, OpenAI

from tests.e2e.helpers import metric_lines, running_frontend, settings_for, wait_engine_idle
from trtpipe.serve.engine_client.speculation import SpeculationConfig

pytestmark = pytest.mark.e2e
PROMPTS = ["Once upon a time", "The robot said", "In a galaxy far away", "Hello"]


def _greedy(client: OpenAI, model: str, prompt: str, stream: bool = False, max_tokens: int = 40):
    kw = dict(model=model, prompt=prompt, max_tokens=max_tokens, temperature=0)
    if not stream:
        out = client.completions.create(**kw)
        return out.choices[0].text, out.choices[0].finish_reason, out.usage
    chunks = list(client.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    return text, [c.choices[0].finish_reason for c in chunks if c.choices][-1], chunks[-1].usage


@pytest.fixture(scope="module")
def plain(frontend) -> OpenAI:
    return OpenAI(base_url=frontend, api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def self_draft(triton, built_repo):
    """tiny-llama drafting for itself: every greedy draft token is accepted."""
    with running_frontend(settings_for(triton, built_repo, draft_models=(("tiny-llama", "tiny-llama"),))) as url:
        yield url


def test_greedy_output_with_speculation_equals_plain_decoding(plain, self_draft):
    client = OpenAI(base_url=self_draft, api_key="x", max_retries=0)
    for prompt in PROMPTS:
        expected = _greedy(plain, "tiny-llama", prompt)
        for stream in (False, True):
            text, reason, usage = _greedy(client, "tiny-llama", prompt, stream)
            assert (text, reason) == expected[:2]
            assert usage.completion_tokens == expected[2].completion_tokens
            spec = usage.model_extra["speculation"]
            assert spec["num_draft_tokens"] > 0 and spec["acceptance_rate"] >= 0.9, spec
    samples = metric_lines(self_draft, "vllm:spec_decode_num")
    assert samples['vllm:spec_decode_num_draft_tokens_total{model_name="tiny-llama"}'] > 0
    assert samples['vllm:spec_decode_num_accepted_tokens_total{model_name="tiny-llama"}'] > 0
    enabled = metric_lines(self_draft, "trtpipe_spec_decode_enabled")
    assert enabled['trtpipe_spec_decode_enabled{model="tiny-llama"}'] == 1


async def test_many_speculative_requests_run_at_once_and_stay_exact(plain, self_draft):
    client = AsyncOpenAI(base_url=self_draft, api_key="x", max_retries=0)
    prompts = [f"Robot number {i} woke up" for i in range(8)]

    async def streamed(prompt: str) -> str:
        stream = await client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=32, temperature=0,
                                                 stream=True)
        return "".join([c.choices[0].text async for c in stream if c.choices])

    together = await asyncio.gather(*(streamed(p) for p in prompts))
    assert together == [_greedy(plain, "tiny-llama", p, max_tokens=32)[0] for p in prompts]


async def test_a_large_batch_turns_speculation_off_and_a_small_one_back_on(triton, built_repo, plain):
    settings = settings_for(triton, built_repo, draft_models=(("tiny-llama", "tiny-llama"),),
                            speculation=SpeculationConfig(max_batch=2))
    with running_frontend(settings) as url:
        client = AsyncOpenAI(base_url=url, api_key="x", max_retries=0)
        load = asyncio.ensure_future(asyncio.gather(*(client.completions.create(
            model="tiny-llama", prompt=f"Batch {i}", max_tokens=48, temperature=0) for i in range(6))))
        states = set()
        while not load.done():
            states.update(k for k, v in metric_lines(url, "trtpipe_spec_decode_state").items() if v == 1)
            await asyncio.sleep(0.05)
        outs = await load
        states.update(k for k, v in metric_lines(url, "trtpipe_spec_decode_state").items() if v == 1)  # sticky
        assert 'trtpipe_spec_decode_state{model="tiny-llama",state="off_batch"}' in states
        assert [o.choices[0].text for o in outs] == [_greedy(plain, "tiny-llama", f"Batch {i}", max_tokens=48)[0]
                                                     for i in range(6)]
        _, _, usage = _greedy(OpenAI(base_url=url, api_key="x", max_retries=0), "tiny-llama", "alone", max_tokens=16)
        assert usage.model_extra["speculation"]["num_draft_tokens"] > 0
        assert metric_lines(url, "trtpipe_spec_decode_state")[
            'trtpipe_spec_decode_state{model="tiny-llama",state="on"}'] == 1


def test_a_published_draft_with_low_acceptance_is_turned_off_and_output_stays_exact(spec_triton, plain):
    settings = replace(settings_for(spec_triton, spec_triton.repo), speculation=SpeculationConfig(min_rounds=8))
    with running_frontend(settings) as url:
        client = OpenAI(base_url=url, api_key="x", max_retries=0)
        card = client.models.retrieve("tiny-llama-spec")
        assert card.model_extra["trtpipe"]["draft_model"] == "tiny-llama-draft"
        # tiny-llama-spec has tiny-llama's weights: its greedy text is tiny-llama's, draft or no draft.
        for i, prompt in enumerate(PROMPTS):
            text, reason, usage = _greedy(client, "tiny-llama-spec", prompt, stream=bool(i % 2))
            assert (text, reason) == _greedy(plain, "tiny-llama", prompt)[:2]
            assert "speculation" in usage.model_extra
        # The random draft is almost never right: after min_rounds the controller switches speculation off.
        state = metric_lines(url, "trtpipe_spec_decode_")
        assert state['trtpipe_spec_decode_state{model="tiny-llama-spec",state="off_acceptance"}'] == 1
        assert state['trtpipe_spec_decode_enabled{model="tiny-llama-spec"}'] == 0
        assert state['trtpipe_spec_decode_acceptance_rate{model="tiny-llama-spec"}'] < 0.6
        drafted = metric_lines(url, "trtpipe_spec_decode_num_draft_tokens_total")
        before = drafted['trtpipe_spec_decode_num_draft_tokens_total{model="tiny-llama-spec"}']
        _greedy(client, "tiny-llama-spec", "and now, mostly plain", max_tokens=48)
        after = metric_lines(url, "trtpipe_spec_decode_num_draft_tokens_total")[
            'trtpipe_spec_decode_num_draft_tokens_total{model="tiny-llama-spec"}']
        assert after - before <= 4  # at most one probing round while off
    for model in ("tiny-llama-spec-engine", "tiny-llama-draft-engine"):
        assert wait_engine_idle(spec_triton.ports.metrics, model)["num_active_requests"] == 0


def test_a_seeded_sampled_request_gives_the_same_text_every_time_with_a_draft_as_without(plain, self_draft):
    client = OpenAI(base_url=self_draft, api_key="x", max_retries=0)

    def sample(c: OpenAI, seed: int):
        out = c.completions.create(model="tiny-llama", prompt="The robot said", max_tokens=24, temperature=1.0,
                                   seed=seed)
        return out.choices[0].text, out.usage.model_extra.get("speculation")

    for seed in range(10):
        without = sample(plain, seed)
        first, second = sample(client, seed), sample(client, seed)
        assert first == second == without, seed
        assert first[1] is None  # not speculated, so no speculation usage
