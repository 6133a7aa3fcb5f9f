"""Tool calling through the official openai client on tiny-llama (random weights, real Triton).

`required` and named calls are enforced by a grammar, so with random weights every call still names a given
tool and its arguments parse and validate against that tool's schema, for every seed.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai import OpenAI

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
           "properties": {"city": {"type": "string", "maxLength": 10}, "unit": {"enum": ["c", "f"]}}}
TIME = {"type": "object", "additionalProperties": False, "required": ["zone"],
        "properties": {"zone": {"type": "string", "maxLength": 6}}}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": TIME}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}


def create(client, **kw):
    return client.chat.completions.create(model="tiny-llama", messages=kw.pop("messages", MESSAGES), tools=TOOLS,
                                          max_tokens=kw.pop("max_tokens", 200), **kw)


def test_a_named_function_is_always_called_with_valid_arguments(client):
    for seed in range(8):
        r = create(client, temperature=1.0, seed=seed,
                   tool_choice={"type": "function", "function": {"name": "get_weather"}})
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        [call] = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_") and call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_required_calls_name_given_tools_and_validate_for_many_seeds(client):
    for seed in range(8):
        r = create(client, temperature=1.0, seed=seed, tool_choice="required")
        calls = r.choices[0].message.tool_calls
        assert r.choices[0].finish_reason == "tool_calls" and calls
        assert len({c.id for c in calls}) == len(calls)
        for c in calls:
            jsonschema.validate(json.loads(c.function.arguments), SCHEMAS[c.function.name])


def test_parallel_tool_calls_false_gives_exactly_one_call(client):
    for seed in range(4):
        r = create(client, temperature=1.0, seed=seed, tool_choice="required", parallel_tool_calls=False)
        assert len(r.choices[0].message.tool_calls) == 1


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_time"}}])
def test_streamed_calls_arrive_as_argument_deltas_that_join_to_the_non_streamed_call(client, tool_choice):
    kw = dict(temperature=1.0, seed=11, tool_choice=tool_choice)
    full = create(client, **kw).choices[0].message.tool_calls
    chunks = list(create(client, stream=True, **kw))
    deltas = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert not any(c.choices[0].delta.content for c in chunks if c.choices)
    heads = [d for d in deltas if d.id is not None]
    assert [h.function.name for h in heads] == [c.function.name for c in full]
    assert all(h.function.arguments == "" and h.type == "function" for h in heads)
    assert len(deltas) > 2 * len(heads) - 1  # arguments arrive in pieces, not in one chunk
    for i, call in enumerate(full):
        assert "".join(d.function.arguments for d in deltas if d.index == i) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_tool_call_round_trips_through_a_second_turn(client):
    first = create(client, temperature=0.0, tool_choice={"type": "function", "function": {"name": "get_weather"}})
    msg = first.choices[0].message
    call = msg.tool_calls[0]
    history = MESSAGES + [msg.model_dump(exclude_none=True),
                          {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp": 21})}]
    second = create(client, messages=history, temperature=0.0, max_tokens=16, tool_choice="none")
    assert second.choices[0].message.tool_calls is None
    assert second.usage.prompt_tokens > first.usage.prompt_tokens
    third = create(client, messages=history, temperature=0.0, tool_choice="required")
    assert third.choices[0].finish_reason == "tool_calls"


def test_auto_with_plain_text_output_is_plain_content(client):
    plain = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=24, temperature=0.0)
    auto = create(client, temperature=0.0, max_tokens=24, tool_choice="auto")
    # tiny-llama's template does not render tools, so the prompt and the greedy text are the same.
    if not plain.choices[0].message.content.lstrip().startswith("{"):
        assert auto.choices[0].message.content == plain.choices[0].message.content
        assert auto.choices[0].message.tool_calls is None


@pytest.mark.parametrize("extra,param", [
    ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "response_format"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}],
      "tool_choice": "required"}, "tools"),
])
def test_bad_tool_requests_are_400s_naming_the_parameter(client, extra, param):
    body = {"tools": TOOLS, **extra}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, **body)
    assert e.value.body["param"] == param


def test_tool_choice_without_tools_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, tool_choice="required")
    assert e.value.body["param"] == "tool_choice"


THINKING_TEMPLATE = (
    "{% if tools %}<tools>{% for t in tools %}{{ t.function.name }} {% endfor %}</tools>\n"
    "Call a tool as <tool_call>{...}</tool_call>.\n{% endif %}"
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: <think>\n{% endif %}{# </think> closes the reasoning #}")


def test_a_thinking_template_gets_the_tools_and_its_reasoning_is_separated(triton, built_repo, client):
    from tests.e2e.helpers import running_frontend, settings_for

    prompt = "<tools>get_weather get_time </tools>\nCall a tool as <tool_call>{...}</tool_call>.\n" \
             f"user: {MESSAGES[0]['content']}\nassistant: <think>\n"
    raw = client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=24, temperature=0)
    assert "</think>" not in raw.choices[0].text and "<tool_call>" not in raw.choices[0].text
    with running_frontend(settings_for(triton, built_repo, chat_template=THINKING_TEMPLATE)) as url:
        custom = OpenAI(base_url=url, api_key="x", max_retries=0)
        kw = dict(model="tiny-llama", messages=MESSAGES, tools=TOOLS, max_tokens=24, temperature=0)
        out = custom.chat.completions.create(**kw)
        chunks = list(custom.chat.completions.create(stream=True, **kw))
    assert out.usage.prompt_tokens == raw.usage.prompt_tokens  # the template saw the tools
    message = out.choices[0].message
    # The generation prompt opened <think> and the model never closed it: all of it is reasoning.
    assert message.model_extra["reasoning_content"] == raw.choices[0].text and not message.content
    streamed = "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks if c.choices)
    assert streamed == raw.choices[0].text
