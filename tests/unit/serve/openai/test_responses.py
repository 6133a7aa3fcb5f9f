"""A /v1/responses request -> the chat path's request: the exact messages, tools, format and sampling fields, the
same tokens as the equivalent chat request, and every refusal a 400 naming the Responses parameter."""

from __future__ import annotations

import pytest

from trtpipe.serve import errors
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.response_store import StoredResponse
from trtpipe.serve.openai.responses import (CHAT_ONLY, UNSUPPORTED, chat_request, in_responses_terms,
                                            prepare_response)
from trtpipe.serve.openai.responses_input import conversation_messages
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import validate_chat
from trtpipe.serve.protocol import ChatCompletionRequest, ResponsesRequest
from tests.unit.serve.served_model import tiny_served_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ServedModel:
    return tiny_served_model(tmp_path_factory)


def request(**kw) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "tiny-llama", "input": "hi", **kw})


def refused(fn, *args) -> RequestError:
    with pytest.raises(RequestError) as e:
        fn(*args)
    assert e.value.status == 400
    return e.value


CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": '{"a": 1}', "id": "fc_1",
        "status": "completed"}


def test_items_become_chat_messages_in_order_with_calls_joined_to_their_assistant_turn():
    items = [{"role": "developer", "content": "rules"},
             {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a"},
                                                              {"type": "input_text", "text": "b"}]},
             {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "?"}]},
             {"role": "assistant", "content": [{"type": "output_text", "text": "let me see", "annotations": [],
                                                "logprobs": []}], "id": "msg_1", "status": "completed"},
             CALL, {**CALL, "call_id": "call_2", "name": "g"},
             {"type": "function_call_output", "call_id": "call_1", "output": "1"},
             {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "2"}]}]
    messages, num_chars = conversation_messages([], items, "be brief")
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    assert messages == [
        {"role": "system", "content": "be brief"}, {"role": "developer", "content": "rules"},
        {"role": "user", "content": "ab"},
        {"role": "assistant", "content": "let me see",
         "tool_calls": [call, {**call, "id": "call_2", "function": {"name": "g", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "1"},
        {"role": "tool", "tool_call_id": "call_2", "content": "2"}]
    assert num_chars == len("rules" "ab" "let me see") + 2 * len('{"a": 1}call_1') + 2 + 1 + 1  # the instructions
    # are not counted: they are not stored


def test_the_stored_conversation_comes_first_and_its_calls_can_be_answered():
    history = [{"role": "user", "content": "q"}, CALL]
    messages, num_chars = conversation_messages(history, [{"type": "function_call_output", "call_id": "call_1",
                                                           "output": "42"}], "new rules")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    assert num_chars == 2  # only this request's items


@pytest.mark.parametrize("item, param", [
    ({"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}, "input.0.content.0.type"),
    ({"role": "user", "content": [{"type": "output_text", "text": "x"}]}, "input.0.content.0.type"),
    ({"role": "user", "content": [{"type": "input_text"}]}, "input.0.content.0.text"),
    ({"role": "user", "content": [{"type": "input_text", "text": "x", "prompt_cache_breakpoint": {"mode": "x"}}]},
     "input.0.content.0.prompt_cache_breakpoint"),
    ({"role": "user", "content": 5}, "input.0.content"),
    ({"role": "tool", "content": "x"}, "input.0.role"),
    ({"role": "assistant", "content": "x", "phase": "commentary"}, "input.0.phase"),
    ({"type": "item_reference", "id": "msg_1"}, "input.0.type"),
    ({"type": "web_search_call", "id": "ws_1"}, "input.0.type"),
    ({"type": "function_call", "call_id": "c", "arguments": "{}"}, "input.0.name"),
    ({"type": "function_call_output", "call_id": "call_9", "output": "1"}, "input.0.call_id"),
    ({"type": "function_call_output", "call_id": "call_1", "output": [{"type": "input_file", "file_id": "f"}]},
     "input.0.output.0.type"),
    ("just a string", "input.0"),
])
def test_an_item_this_server_cannot_take_is_a_400_naming_its_place(item, param):
    history = [CALL] if "call_1" in str(item) else []
    assert refused(conversation_messages, history, [item], None).param == param


def test_no_message_at_all_is_a_400_naming_input():
    assert refused(conversation_messages, [], [], None).param == "input"


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_each_unimplemented_responses_field_is_refused_by_name_and_its_off_value_accepted(name, model):
    err = refused(prepare_response, request(**{name: {"x": 1}}), model, None)
    assert (err.param, err.message) == (name, f"`{name}` is not supported by this server")
    for off in UNSUPPORTED[name] + (None,):
        prepare_response(request(**{name: off}, max_output_tokens=2), model, None)


@pytest.mark.parametrize("name", sorted(CHAT_ONLY))
def test_each_chat_completions_field_is_refused_naming_the_responses_field_to_use(name, model):
    err = refused(prepare_response, request(**{name: 1}), model, None)
    assert err.param == name and "Chat Completions" in err.message
    if CHAT_ONLY[name]:
        assert f"takes `{CHAT_ONLY[name]}`" in err.message


@pytest.mark.parametrize("body, param", [
    ({"stream_options": {"include_obfuscation": False}}, "stream_options"),  # without stream
    ({"stream": True, "stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
    ({"text": {"verbosity": "low"}}, "text.verbosity"),
    ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"metadata": {"k": "v" * 513}}, "metadata"),
    ({"tools": [{"type": "file_search"}]}, "tools.0.type"),
    ({"tools": [{"type": "function"}]}, "tools.0.name"),
    ({"tools": [{"type": "function", "name": "f", "defer_loading": True}]}, "tools.0.defer_loading"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "allowed_tools"}}, "tool_choice"),
    ({"tools": [{"type": "function", "name": "f"}], "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ({"top_k": -1}, "top_k"),
    ({"min_p": 0.5}, "min_p"),  # a vLLM extension this server does not implement: refused by validate_chat
])
def test_a_bad_field_is_a_400_naming_it(body, param, model):
    assert refused(prepare_response, request(**body), model, None).param == param


def test_chat_errors_are_renamed_to_the_responses_parameters(model):
    err = refused(prepare_response, request(max_output_tokens=10**6), model, None)
    assert (err.param, err.message) == ("max_output_tokens", f"`max_output_tokens` must be <= "
                                                             f"{model.spec.max_max_tokens}. Given: 1000000")
    bad_schema = {"format": {"type": "json_schema", "name": "x", "schema": {"type": "nope"}}}
    err = refused(prepare_response, request(text=bad_schema), model, None)
    assert err.param == "text.format" and err.message.startswith("`text.format` cannot be enforced")
    err = in_responses_terms(errors.context_too_long("messages.3", "lower `max_completion_tokens`"))
    assert (err.param, err.message, err.code) == ("input", "lower `max_output_tokens`", "context_length_exceeded")


def test_the_chat_request_carries_the_tools_format_sampling_and_extensions():
    tool = {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}
    req = request(tools=[tool], tool_choice={"type": "function", "name": "f"}, parallel_tool_calls=False,
                  max_output_tokens=9, temperature=0.5, top_p=0.9, user="u", seed=3, top_k=5, unknown_vendor_field=1,
                  text={"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": False}})
    chat = chat_request(req, [{"role": "user", "content": "hi"}])
    assert chat.model_dump(exclude_unset=True, exclude_none=True) == ChatCompletionRequest.model_validate({
        "model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_completion_tokens": 9,
        "temperature": 0.5, "top_p": 0.9, "user": "u", "seed": 3, "top_k": 5, "parallel_tool_calls": False,
        "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                                                    "strict": True}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": "object"},
                                                                   "strict": False}},
    }).model_dump(exclude_unset=True, exclude_none=True)


def test_a_response_prompts_the_engine_with_the_tokens_of_the_same_chat_request(model):
    prepared = prepare_response(request(input=[{"role": "user", "content": "Hello"}], instructions="Be brief.",
                                        max_output_tokens=5, temperature=0), model, None)
    chat = validate_chat(ChatCompletionRequest(model="tiny-llama", max_completion_tokens=5, temperature=0, messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]), model)
    assert prepared.gen.calls == chat.calls
    assert prepared.context == [{"role": "user", "content": "Hello"}] and prepared.num_context_chars == 5
    assert prepared.settings["instructions"] == "Be brief." and prepared.settings["tool_choice"] == "auto"


def test_a_continuation_answers_the_stored_context_and_output_and_counts_their_characters(model):
    output = [{"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
               "content": [{"type": "output_text", "text": "Hi!", "annotations": [], "logprobs": []}]}]
    previous = StoredResponse({"id": "resp_1", "output": output}, [{"role": "user", "content": "Hello"}], 8)
    prepared = prepare_response(request(input="More", previous_response_id="resp_1"), model, previous)
    chat = validate_chat(ChatCompletionRequest(model="tiny-llama", messages=[
        {"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "More"}]), model)
    assert prepared.gen.calls[0].input_ids == chat.calls[0].input_ids
    assert prepared.context == previous.conversation + [{"type": "message", "role": "user", "content": "More"}]
    assert prepared.num_context_chars == 8 + 4


@pytest.mark.parametrize("text, echoed", [
    (None, {"format": {"type": "text"}}),
    ({"format": {"type": "json_object"}}, {"format": {"type": "json_object"}}),
    ({"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": True}},
     {"format": {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": True}}),
])
def test_the_response_echoes_the_text_format_as_given(text, echoed, model):
    prepared = prepare_response(request(text=text, max_output_tokens=1), model, None)
    assert prepared.settings["text"] == echoed
