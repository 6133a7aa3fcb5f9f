"""The official openai client against the trtpipe frontend over a real Triton."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "Tell me a story about a small robot."}]


@pytest.fixture(scope="module")
def client(frontend) -> OpenAI:
    return OpenAI(base_url=frontend, api_key="unused", max_retries=0)


def test_models_lists_tiny_llama_with_its_build(client):
    [model] = client.models.list().data
    assert model.id == "tiny-llama"
    assert model.model_extra["trtpipe"]["version"] == 1
    assert model.model_extra["trtpipe"]["system_fingerprint"].startswith("trtpipe-reference-")


def test_streamed_chat_joined_equals_the_non_streamed_text_under_greedy(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=40, temperature=0)
    full = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kw))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(pieces) == full.choices[0].message.content
    assert len(pieces) > 1
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == full.usage.prompt_tokens
    assert full.system_fingerprint.startswith("trtpipe-reference-")


def test_length_finish_reason_and_exact_usage(client):
    out = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=7, temperature=0,
                                         extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 7
    assert out.usage.total_tokens == out.usage.prompt_tokens + 7


def test_completions_streaming_and_not_agree(client):
    kw = dict(model="tiny-llama", prompt="Once upon a time", max_tokens=24, temperature=0)
    full = client.completions.create(**kw)
    streamed = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw) if c.choices)
    assert streamed == full.choices[0].text


def test_stop_string_ends_the_text_before_it(client):
    kw = dict(model="tiny-llama", prompt="Once upon a time", max_tokens=40, temperature=0)
    text = client.completions.create(**kw).choices[0].text
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert len(stop) == 3
    out = client.completions.create(stop=[stop], **kw)
    assert out.choices[0].text == text[: text.index(stop)]
    assert out.choices[0].finish_reason == "stop"


def test_n_choices_with_a_seed_are_reproducible(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=1.0, seed=3, n=2)
    first = client.chat.completions.create(**kw)
    second = client.chat.completions.create(**kw)
    assert [c.message.content for c in first.choices] == [c.message.content for c in second.choices]
    assert [c.index for c in first.choices] == [0, 1]


def test_unknown_model_is_a_404_with_the_openai_error_envelope(client):
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=MESSAGES)
    assert err.value.body["code"] == "model_not_found"
    assert err.value.body["param"] == "model"


def test_max_tokens_above_the_cap_is_a_400_naming_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=100000)
    assert err.value.body["param"] == "max_tokens"
    assert "must be <= 512. Given: 100000" in err.value.body["message"]


def test_prompt_beyond_the_context_is_context_length_exceeded(client):
    long_prompt = "robot " * 2000
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model="tiny-llama", prompt=long_prompt, max_tokens=10)
    assert err.value.body["code"] == "context_length_exceeded"


def test_malformed_json_is_a_400_not_a_500(frontend):
    r = httpx.post(f"{frontend}/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
