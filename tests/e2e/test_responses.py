"""/v1/responses through the official openai client on tiny-llama (random weights, real Triton).

The Responses API is served by the chat path, so each feature is pinned against the chat completion of the same
conversation: greedy (or seeded) text, token counts and usage must be equal, not merely plausible.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"


def chat(client: OpenAI, messages: list[dict], **kw):
    return client.chat.completions.create(model=MODEL, messages=messages, **kw)


def assert_same_as_chat(response, completion) -> None:
    """A response and the chat completion of the same conversation: same text, same token counts, same end."""
    choice = completion.choices[0]
    assert response.output_text == choice.message.content
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == \
        (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens)
    if choice.finish_reason == "length":
        assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
        assert response.output[-1].status == "incomplete"
    else:
        assert response.status == "completed" and response.incomplete_details is None


def test_plain_text_input_with_instructions_is_the_greedy_chat_completion(client):
    r = client.responses.create(model=MODEL, input="Tell me about robots.", instructions="Be brief.",
                                max_output_tokens=20, temperature=0)
    c = chat(client, [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about robots."}],
             max_completion_tokens=20, temperature=0)
    assert_same_as_chat(r, c)
    assert r.id.startswith("resp_") and r.object == "response" and r.model == MODEL
    [message] = r.output
    assert (message.type, message.role, message.id[:4]) == ("message", "assistant", "msg_")
    assert [p.type for p in message.content] == ["output_text"] and message.content[0].annotations == []
    assert (r.instructions, r.max_output_tokens, r.temperature, r.top_p, r.store) == ("Be brief.", 20, 0.0, 1.0, True)
    assert r.usage.input_tokens_details.cached_tokens >= 0 and r.usage.output_tokens_details.reasoning_tokens == 0


STREAM_KW = dict(model=MODEL, input="Say something.", max_output_tokens=12, temperature=0)


def test_a_stream_is_the_responses_event_sequence_numbered_from_zero_and_joins_to_the_plain_response(client):
    plain = client.responses.create(**STREAM_KW)
    events = list(client.responses.create(stream=True, **STREAM_KW))
    kinds = [e.type for e in events]
    num_deltas = kinds.count("response.output_text.delta")
    assert num_deltas >= 2
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * num_deltas,
                     "response.output_text.done", "response.content_part.done", "response.output_item.done",
                     f"response.{plain.status}"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, final = events[0].response, events[-1].response
    assert created.status == "in_progress" and created.output == [] and created.usage is None
    assert final.id == created.id and final.id != plain.id
    item_id = events[2].item.id
    assert {e.item_id for e in events if hasattr(e, "item_id")} == {item_id} and final.output[0].id == item_id
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == plain.output_text == events[-4].text == events[-3].part.text == final.output_text
    assert final.usage.model_dump() == plain.usage.model_dump()


def test_message_items_with_every_role_are_the_chat_messages_with_those_roles(client):
    items = [{"role": "developer", "content": "Answer in French."},
             {"type": "message", "role": "system", "content": [{"type": "input_text", "text": "Be kind."}]},
             {"role": "user", "content": [{"type": "input_text", "text": "Hello"},
                                          {"type": "input_text", "text": " there"}]},
             {"role": "assistant", "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}]},
             {"role": "user", "content": "And now?"}]
    messages = [{"role": "developer", "content": "Answer in French."}, {"role": "system", "content": "Be kind."},
                {"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Bonjour"},
                {"role": "user", "content": "And now?"}]
    r = client.responses.create(model=MODEL, input=items, max_output_tokens=16, temperature=0)
    assert_same_as_chat(r, chat(client, messages, max_completion_tokens=16, temperature=0))


def test_max_output_tokens_caps_the_output_and_marks_the_response_incomplete(client):
    kw = dict(model=MODEL, input="Go on forever.", max_output_tokens=7, temperature=0, extra_body={"ignore_eos": True})
    r = client.responses.create(**kw)
    assert r.usage.output_tokens == 7
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    events = list(client.responses.create(stream=True, **kw))
    assert events[-1].type == "response.incomplete" and events[-1].response.output_text == r.output_text


def test_temperature_and_top_p_sample_as_chat_does_for_the_same_seed(client):
    kw = dict(temperature=0.9, top_p=0.8, extra_body={"seed": 17, "ignore_eos": True})
    r = client.responses.create(model=MODEL, input="Pick a word.", max_output_tokens=24, **kw)
    c = chat(client, [{"role": "user", "content": "Pick a word."}], max_completion_tokens=24, **kw)
    assert_same_as_chat(r, c)
    assert (r.temperature, r.top_p) == (0.9, 0.8)
    greedy = client.responses.create(model=MODEL, input="Pick a word.", max_output_tokens=24, temperature=0,
                                     extra_body={"ignore_eos": True})
    assert greedy.output_text != r.output_text


PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age"],
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 0, "maximum": 150}}}


def test_a_json_schema_text_format_is_enforced_for_many_seeds(client):
    fmt = {"format": {"type": "json_schema", "name": "person", "schema": PERSON, "strict": True}}
    for seed in range(6):
        r = client.responses.create(model=MODEL, input="Describe a person as JSON.", text=fmt, temperature=1.0,
                                    max_output_tokens=100, extra_body={"seed": seed})
        assert r.status == "completed", r.output_text
        jsonschema.validate(json.loads(r.output_text), PERSON)
        assert r.text.format.type == "json_schema" and r.text.format.name == "person"


class Person(BaseModel):
    name: str = Field(max_length=8)
    age: int = Field(ge=0, le=150)


def test_responses_parse_and_the_stream_helper_give_the_pydantic_object(client):
    kw = dict(model=MODEL, input="Describe a person.", text_format=Person, temperature=1.0, max_output_tokens=100,
              extra_body={"seed": 3})
    parsed = client.responses.parse(**kw)
    assert isinstance(parsed.output_parsed, Person)
    with client.responses.stream(**kw) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == parsed.output_parsed and final.output_text == parsed.output_text


WEATHER = {"type": "object", "additionalProperties": False, "required": ["city"],
           "properties": {"city": {"type": "string", "maxLength": 10}}}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather now", "parameters": WEATHER,
          "strict": True}]
NAMED = {"type": "function", "name": "get_weather"}


def test_a_named_function_gives_a_function_call_item_with_valid_arguments(client):
    for seed in range(4):
        r = client.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS, tool_choice=NAMED,
                                    temperature=1.0, max_output_tokens=60, extra_body={"seed": seed})
        [call] = r.output
        assert (call.type, call.name, call.status, r.status) == ("function_call", "get_weather", "completed",
                                                                  "completed")
        assert call.call_id.startswith("call_") and call.id.startswith("fc_")
        jsonschema.validate(json.loads(call.arguments), WEATHER)
    assert r.tools[0].name == "get_weather" and r.tool_choice.name == "get_weather"


def test_a_streamed_function_call_arrives_as_argument_deltas(client):
    kw = dict(model=MODEL, input="Weather in Paris?", tools=TOOLS, tool_choice="required", temperature=0,
              max_output_tokens=60)
    plain = client.responses.create(**kw)
    events = list(client.responses.create(stream=True, **kw))
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [a.type for a in added] == ["function_call"] * len(plain.output) and added[0].arguments == ""
    deltas = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 1
    done = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    assert done == [c.arguments for c in plain.output] and "".join(deltas) == "".join(done)


def test_a_tool_call_round_trip_sends_the_call_and_its_output_back(client):
    first = client.responses.create(model=MODEL, input="Weather in Paris?", tools=TOOLS, tool_choice=NAMED,
                                    temperature=0, max_output_tokens=60)
    call = first.output[0]
    output = {"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"temp": 21})}
    history = [{"role": "user", "content": "Weather in Paris?"}, call.model_dump(exclude_none=True), output]
    second = client.responses.create(model=MODEL, input=history, tools=TOOLS, temperature=0, max_output_tokens=12)
    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "tool_calls": [{"id": call.call_id, "type": "function",
                                                      "function": {"name": call.name, "arguments": call.arguments}}]},
                {"role": "tool", "tool_call_id": call.call_id, "content": output["output"]}]
    c = chat(client, messages, tools=[{"type": "function", "function": {k: v for k, v in TOOLS[0].items()
                                                                         if k != "type"}}],
             temperature=0, max_completion_tokens=12)
    assert second.usage.input_tokens == c.usage.prompt_tokens > first.usage.input_tokens
    assert second.output_text == (c.choices[0].message.content or "")
    # The same turn by reference: the stored first response carries the call.
    chained = client.responses.create(model=MODEL, previous_response_id=first.id, input=[output], tools=TOOLS,
                                      temperature=0, max_output_tokens=12)
    assert chained.usage.input_tokens == second.usage.input_tokens and chained.output_text == second.output_text


def test_previous_response_id_continues_the_stored_conversation(client):
    first = client.responses.create(model=MODEL, input="Hello.", instructions="Only for the first turn.",
                                    max_output_tokens=10, temperature=0)
    second = client.responses.create(model=MODEL, previous_response_id=first.id, input="And then?",
                                     max_output_tokens=10, temperature=0)
    assert second.previous_response_id == first.id and second.instructions is None
    c = chat(client, [{"role": "user", "content": "Hello."}, {"role": "assistant", "content": first.output_text},
                      {"role": "user", "content": "And then?"}], max_completion_tokens=10, temperature=0)
    assert_same_as_chat(second, c)
    third = client.responses.create(model=MODEL, previous_response_id=second.id, input="Last.", max_output_tokens=4,
                                    temperature=0)
    assert third.usage.input_tokens > second.usage.input_tokens


def test_store_false_is_stateless_and_cannot_be_retrieved_or_continued(client):
    r = client.responses.create(model=MODEL, input="Forget me.", store=False, max_output_tokens=4, temperature=0)
    assert r.store is False
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.retrieve(r.id)
    assert e.value.body["code"] == "response_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=MODEL, previous_response_id=r.id, input="More.")
    assert (e.value.body["param"], e.value.body["code"]) == ("previous_response_id", "previous_response_not_found")


def test_get_returns_the_stored_response_and_delete_removes_it(client):
    r = client.responses.create(model=MODEL, input="Keep me.", max_output_tokens=4, temperature=0,
                                metadata={"topic": "test"})
    got = client.responses.retrieve(r.id)
    assert got.model_dump() == r.model_dump() and got.metadata == {"topic": "test"}
    streamed = list(client.responses.create(model=MODEL, input="Keep me too.", max_output_tokens=4, stream=True))
    final = streamed[-1].response
    assert client.responses.retrieve(final.id).model_dump() == final.model_dump()
    client.responses.delete(r.id)
    for call in (client.responses.retrieve, client.responses.delete):
        with pytest.raises(openai.NotFoundError) as e:
            call(r.id)
        assert e.value.status_code == 404 and e.value.body["param"] == "response_id"


def test_a_repeated_long_prompt_reports_the_cached_tokens_of_the_prefix_cache(client):
    text = " ".join(f"word{i}" for i in range(60))
    first = client.responses.create(model=MODEL, input=text, max_output_tokens=2, temperature=0)
    again = client.responses.create(model=MODEL, input=text, max_output_tokens=2, temperature=0)
    assert first.usage.input_tokens > 64
    cached = again.usage.input_tokens_details.cached_tokens
    assert cached > 0 and cached % 32 == 0 and cached <= again.usage.input_tokens  # whole 32-token blocks


@pytest.mark.parametrize("extra, param", [
    ({"background": True}, "background"),
    ({"reasoning": {"effort": "low"}}, "reasoning"),
    ({"truncation": "auto"}, "truncation"),
    ({"include": ["message.output_text.logprobs"]}, "include"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"prompt_cache_key": "k"}, "prompt_cache_key"),
    ({"max_tokens": 5}, "max_tokens"),
    ({"max_output_tokens": 100000}, "max_output_tokens"),
    ({"temperature": 3}, "temperature"),
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools.0.name"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}}, "text.format"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://x"}]}]},
     "input.0.content.0.type"),
    ({"input": [{"type": "function_call_output", "call_id": "call_nope", "output": "1"}]}, "input.0.call_id"),
    ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input.0.type"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input.0.role"),
])
def test_bad_or_unsupported_input_is_a_400_naming_the_parameter(client, extra, param):
    body = {"model": MODEL, "input": "hi", "max_output_tokens": 4, **extra}
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/responses", body=body, cast_to=dict)
    assert e.value.status_code == 400 and e.value.body["param"] == param, e.value.body
    assert e.value.body["type"] == "invalid_request_error" and param.split(".")[0] in e.value.body["message"]


def test_a_conversation_too_long_for_the_model_is_a_400_in_responses_terms(client):
    with pytest.raises(openai.BadRequestError) as e:  # refused on its length in characters, before tokenizing
        client.responses.create(model=MODEL, input="word " * 5000)
    assert (e.value.body["param"], e.value.body["code"]) == ("input", "context_length_exceeded")
    with pytest.raises(openai.BadRequestError) as e:  # fits, but not with the output asked for
        client.responses.create(model=MODEL, input="word " * 300, max_output_tokens=500)
    assert (e.value.body["param"], e.value.body["code"]) == ("input", "context_length_exceeded")
    assert "lower `max_output_tokens`" in e.value.body["message"] and "max_completion_tokens" not in e.value.body["message"]


def test_an_unknown_model_is_a_404_naming_the_model(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.responses.create(model="nope", input="hi")
    assert (e.value.body["param"], e.value.body["code"]) == ("model", "model_not_found")


def test_a_body_that_is_not_json_is_refused_before_it_is_read(frontend):
    r = httpx.post(f"{frontend}/responses", content=b'{"model": "tiny-llama"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(f"{frontend}/responses", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "the request body is not valid JSON"


def test_the_openapi_document_describes_the_responses_routes(frontend):
    doc = httpx.get(frontend.removesuffix("/v1") + "/openapi.json").json()
    assert {"200", "400", "429"} <= set(doc["paths"]["/v1/responses"]["post"]["responses"])
    assert {"get", "delete"} <= set(doc["paths"]["/v1/responses/{response_id}"])
    assert {"input", "instructions", "max_output_tokens", "previous_response_id", "store", "text"} <= \
        set(doc["components"]["schemas"]["ResponsesRequest"]["properties"])
