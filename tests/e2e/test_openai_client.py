"""The official openai client (sync and async, streaming and not) against the frontend over a real Triton."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "Tell me a story about a small robot."}]


def test_models_lists_tiny_llama_with_its_build(client):
    [model] = client.models.list().data
    assert model.id == "tiny-llama"
    assert model.model_extra["trtpipe"]["version"] == 1
    assert model.model_extra["trtpipe"]["system_fingerprint"].startswith("trtpipe-reference-")
    assert client.models.retrieve("tiny-llama").id == "tiny-llama"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_streamed_chat_joined_equals_the_non_streamed_text_under_greedy(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=40, temperature=0)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == full.choices[0].message.content
    assert len(pieces) > 1
    # No content-less first chunk: the role rides on the first text.
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert chunks[-2].choices[0].finish_reason == full.choices[0].finish_reason
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].object == "chat.completion.chunk"
    assert full.system_fingerprint.startswith("trtpipe-reference-")
    assert chunks[0].system_fingerprint == full.system_fingerprint


def test_length_finish_reason_and_exact_usage(client):
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=7, temperature=0,
                                         extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 7
    assert out.usage.total_tokens == out.usage.prompt_tokens + 7


def test_max_completion_tokens_takes_precedence_over_max_tokens(client):
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=20,
                                         max_completion_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 3 and out.choices[0].finish_reason == "length"


def test_default_max_tokens_comes_from_the_models_spec(client):
    out = client.completions.create(model="tiny-llama", prompt="Hello", temperature=0,
                                    extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == 64  # tiny-llama's frontend.default_max_tokens


def test_stop_at_end_of_sequence_is_finish_reason_stop(client):
    # Sampling from a random model: some seeds end at an end-of-sequence token before max_tokens.
    reasons = set()
    for seed in range(8):
        out = client.completions.create(model="tiny-llama", prompt="Once", max_tokens=100, temperature=1.0,
                                        seed=seed)
        reason = out.choices[0].finish_reason
        reasons.add(reason)
        assert (reason == "length") == (out.usage.completion_tokens == 100)
    assert reasons <= {"stop", "length"}


def test_completions_streaming_and_not_agree(client):
    kw = dict(model="tiny-llama", prompt="Once upon a time", max_tokens=24, temperature=0)
    full = client.completions.create(**kw)
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert streamed == full.choices[0].text


def test_sampled_text_with_multibyte_tokens_streams_byte_for_byte(client):
    """Random weights at temperature 1 emit CJK merges and raw byte tokens: the joined stream must equal the
    non-streamed text, and both must equal the UTF-8 decode of the sampled tokens' bytes (from logprobs)."""
    multibyte = 0
    for seed in range(6):
        kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=48, temperature=1.0, seed=seed, logprobs=True,
                  extra_body={"ignore_eos": True})
        full = client.chat.completions.create(**kw)
        chunks = list(client.chat.completions.create(stream=True, **kw))
        text = full.choices[0].message.content
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
        raw = b"".join(bytes(t.bytes) for t in full.choices[0].logprobs.content)
        assert raw.decode("utf-8", "replace") == text
        streamed_lp = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
        assert [t.logprob for t in streamed_lp] == pytest.approx([t.logprob for t in full.choices[0].logprobs.content])
        multibyte += sum(1 for ch in text if len(ch.encode()) > 1 and ch != "\ufffd")
    assert multibyte > 0


def test_logprobs_are_those_of_the_sampled_tokens(client):
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, temperature=0,
                                         logprobs=True, top_logprobs=0, extra_body={"ignore_eos": True})
    content = out.choices[0].logprobs.content
    assert len(content) == out.usage.completion_tokens == 8
    assert all(t.logprob <= 0.0 and t.top_logprobs == [] for t in content)
    comp = client.completions.create(model="tiny-llama", prompt="Once upon a time", max_tokens=5, temperature=0,
                                     logprobs=0, extra_body={"ignore_eos": True})
    lp = comp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.text_offset) == 5
    assert "".join(lp.tokens) == comp.choices[0].text or "\ufffd" in comp.choices[0].text


def test_stop_string_ends_the_text_before_it(client):
    kw = dict(model="tiny-llama", prompt="Once upon a time", max_tokens=40, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert len(stop) == 3
    out = client.completions.create(stop=[stop], **kw)
    assert out.choices[0].text == text[: text.index(stop)]
    assert out.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(stop=stop, stream=True, **kw))
    assert "".join(c.choices[0].text for c in streamed) == text[: text.index(stop)]
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_n_choices_with_a_seed_are_reproducible_and_differ(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=1.0, seed=3, n=2)
    first = client.chat.completions.create(**kw)
    second = client.chat.completions.create(**kw)
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    assert [c.index for c in first.choices] == [0, 1]
    assert first.choices[0].message.content != first.choices[1].message.content
    streamed = list(client.chat.completions.create(stream=True, **kw))
    by_index = {0: "", 1: ""}
    for c in streamed:
        for ch in c.choices:
            by_index[ch.index] += ch.delta.content or ""
    assert [by_index[0], by_index[1]] == [c.message.content for c in first.choices]


def test_sampling_parameters_are_accepted(client):
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=6, temperature=0.7,
                                         top_p=0.9, presence_penalty=0.5, frequency_penalty=0.3, seed=1, user="u-1",
                                         extra_body={"top_k": 20, "ignore_eos": True})
    assert out.usage.completion_tokens == 6


def test_echo_prepends_the_prompt(client):
    out = client.completions.create(model="tiny-llama", prompt="Once upon a time", max_tokens=5, temperature=0,
                                    echo=True)
    assert out.choices[0].text.startswith("Once upon a time")
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="tiny-llama", prompt="Once upon a time", max_tokens=5, temperature=0, echo=True, stream=True))
    assert streamed == out.choices[0].text


def test_a_list_of_prompts_gives_a_choice_each_and_summed_usage(client):
    kw = dict(model="tiny-llama", max_tokens=4, temperature=0, extra_body={"ignore_eos": True})
    out = client.completions.create(prompt=[[10, 20, 30], [40, 50]], n=2, **kw)
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    assert out.usage.prompt_tokens == 5 and out.usage.completion_tokens == 16
    assert out.choices[0].text == out.choices[1].text  # greedy: n samples of one prompt agree
    single = client.completions.create(prompt=[40, 50], **kw)
    assert out.choices[2].text == single.choices[0].text
    strings = client.completions.create(prompt=["Once upon", "a time"], **kw)
    assert len(strings.choices) == 2


async def test_async_client_streams_concurrently(aclient):
    async def one(i: int) -> str:
        stream = await aclient.completions.create(model="tiny-llama", prompt=f"Story {i}", max_tokens=16,
                                                  temperature=0, stream=True)
        return "".join([c.choices[0].text async for c in stream if c.choices])

    streamed = await asyncio.gather(*(one(i) for i in range(6)))
    alone = [(await aclient.completions.create(model="tiny-llama", prompt=f"Story {i}", max_tokens=16,
                                               temperature=0)).choices[0].text for i in range(6)]
    assert streamed == alone


async def test_async_chat_non_streaming(aclient):
    out = await aclient.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=5, temperature=0)
    assert out.object == "chat.completion" and out.choices[0].message.role == "assistant"


def test_openapi_document_describes_the_routes_and_models(frontend):
    doc = httpx.get(frontend.removesuffix("/v1") + "/openapi.json").json()
    assert {"/v1/models", "/v1/models/{model_id}", "/v1/completions", "/v1/chat/completions"} <= set(doc["paths"])
    schemas = doc["components"]["schemas"]
    assert {"ChatCompletionRequest", "CompletionRequest", "ChatCompletionResponse", "ChatCompletionChunk",
            "ErrorResponse", "Usage"} <= set(schemas)
    assert "max_completion_tokens" in schemas["ChatCompletionRequest"]["properties"]
    post = doc["paths"]["/v1/chat/completions"]["post"]
    assert {"200", "400", "429"} <= set(post["responses"])


def test_a_chat_template_override_is_used_for_the_prompt(triton, built_repo, client):
    from tests.e2e.helpers import running_frontend, settings_for

    template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:"
    with running_frontend(settings_for(triton, built_repo, chat_template=template)) as url:
        custom = OpenAI(base_url=url, api_key="x", max_retries=0)
        out = custom.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=2, temperature=0)
    rendered = client.completions.create(model="tiny-llama", prompt="user: " + MESSAGES[0]["content"] +
                                         "\nassistant:", max_tokens=2, temperature=0)
    assert out.usage.prompt_tokens == rendered.usage.prompt_tokens
    assert out.choices[0].message.content == rendered.choices[0].text
