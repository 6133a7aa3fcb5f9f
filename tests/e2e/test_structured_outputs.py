"""Structured outputs enforced, through the official openai client, on tiny-llama (random weights, real Triton).

The weights are random, so an output that parses and validates is the grammar's doing: each case runs many
seeds at temperature 1 and checks every one with jsonschema / re.
"""

from __future__ import annotations

import asyncio
import json
import re

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "Describe a person as JSON."}]
SEEDS = range(12)
PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "pets"],
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150},
                         "pets": {"type": "array", "maxItems": 2, "items": {"enum": ["cat", "dog", "fish"]}}}}


def schema_format(schema, strict=True):
    return {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": strict}}


def test_json_schema_outputs_validate_for_many_seeds(client):
    for seed in SEEDS:
        r = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=200, temperature=1.0,
                                           seed=seed, response_format=schema_format(PERSON))
        choice = r.choices[0]
        assert choice.finish_reason == "stop", choice.message.content
        jsonschema.validate(json.loads(choice.message.content), PERSON)


def test_streamed_json_schema_output_joins_to_the_non_streamed_one(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=200, temperature=1.0, seed=5,
              response_format=schema_format(PERSON))
    full = client.chat.completions.create(**kw).choices[0].message.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == full
    assert chunks[-1].choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(full), PERSON)


class Pet(BaseModel):
    kind: str = Field(max_length=6)
    legs: int = Field(ge=0, le=8)


class Owner(BaseModel):
    name: str = Field(max_length=8)
    pets: list[Pet] = Field(max_length=2)


def test_parse_with_a_pydantic_model_returns_the_parsed_object(client):
    for seed in range(4):
        r = client.chat.completions.parse(model="tiny-llama", messages=MESSAGES, max_tokens=300, temperature=1.0,
                                          seed=seed, response_format=Owner)
        parsed = r.choices[0].message.parsed
        assert isinstance(parsed, Owner) and len(parsed.name) <= 8 and len(parsed.pets) <= 2


def test_json_object_is_a_json_object(client):
    r = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=64, temperature=0.0,
                                       response_format={"type": "json_object"})
    choice = r.choices[0]
    # Any object has no length bound: either complete and an object, or cut off by max_tokens.
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(choice.message.content), dict)
    else:
        assert choice.message.content.startswith("{")


def test_vllm_guided_regex_choice_and_grammar_on_completions_and_chat(client):
    for seed in range(6):
        r = client.completions.create(model="tiny-llama", prompt="Code:", max_tokens=20, temperature=1.0, seed=seed,
                                      extra_body={"guided_regex": r"[A-Z]{3}-[0-9]{2}"})
        assert re.fullmatch(r"[A-Z]{3}-[0-9]{2}", r.choices[0].text) and r.choices[0].finish_reason == "stop"
        r = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=20, temperature=1.0,
                                           seed=seed, extra_body={"guided_choice": ["red", "green", "blue"]})
        assert r.choices[0].message.content in ("red", "green", "blue")
        r = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=20, temperature=1.0,
                                           seed=seed, extra_body={"guided_grammar": 'root ::= ("ab" | "cd") "!"'})
        assert r.choices[0].message.content in ("ab!", "cd!")


async def test_async_concurrent_guided_and_plain_requests(aclient):
    async def guided(seed):
        r = await aclient.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=200, seed=seed,
                                                  temperature=1.0, response_format=schema_format(PERSON))
        jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)

    async def plain(seed):
        r = await aclient.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=16, seed=seed)
        assert r.usage.completion_tokens >= 1

    await asyncio.gather(*[guided(s) for s in range(6)], *[plain(s) for s in range(6)])


@pytest.mark.parametrize("extra,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"guided_regex": "[a-"}, "guided_regex"),
    ({"guided_choice": []}, "guided_choice"),
    ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_choice"),
])
def test_a_guide_that_cannot_compile_is_a_400_naming_the_parameter(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, extra_body=extra)
    assert e.value.body["param"] == param
    assert f"`{param.split('.')[0]}" in e.value.body["message"]


def test_guided_requests_speculate_and_greedy_output_equals_decoding_without_the_draft(client, triton, built_repo):
    from tests.e2e.helpers import running_frontend, settings_for

    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=200, temperature=0.0,
              response_format=schema_format(PERSON))
    plain = client.chat.completions.create(**kw)
    with running_frontend(settings_for(triton, built_repo, draft_models=(("tiny-llama", "tiny-llama"),))) as url:
        spec = OpenAI(base_url=url, api_key="x", max_retries=0)
        guided = spec.chat.completions.create(**kw)
        streamed = list(spec.chat.completions.create(stream=True, **kw))
        sampled = [spec.chat.completions.create(**kw | {"temperature": 1.0, "seed": s}) for s in range(4)]
    # Each round resumes the engine's grammar after the tokens generated so far (guided_decoding_prefix_len).
    assert guided.usage.model_extra["speculation"]["num_draft_tokens"] > 0
    assert guided.choices[0].message.content == plain.choices[0].message.content
    assert guided.choices[0].finish_reason == "stop" and guided.usage.completion_tokens == plain.usage.completion_tokens
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == plain.choices[0].message.content
    for r in sampled:
        jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)


def test_a_published_draft_model_speculates_guided_requests_that_still_validate(spec_triton, client):
    from tests.e2e.helpers import running_frontend, settings_for

    kw = dict(messages=MESSAGES, max_tokens=200, response_format=schema_format(PERSON))
    with running_frontend(settings_for(spec_triton, spec_triton.repo)) as url:
        spec = OpenAI(base_url=url, api_key="x", max_retries=0)
        greedy = spec.chat.completions.create(model="tiny-llama-spec", temperature=0.0, **kw)
        sampled = [spec.chat.completions.create(model="tiny-llama-spec", temperature=1.0, seed=s, **kw)
                   for s in range(4)]
    # The draft (tiny-llama-draft) runs its own grammar over the same guide; tiny-llama-spec has tiny-llama's weights.
    assert greedy.usage.model_extra["speculation"]["num_draft_tokens"] > 0
    assert greedy.choices[0].message.content == client.chat.completions.create(
        model="tiny-llama", temperature=0.0, **kw).choices[0].message.content
    for r in sampled:
        jsonschema.validate(json.loads(r.choices[0].message.content), PERSON)
