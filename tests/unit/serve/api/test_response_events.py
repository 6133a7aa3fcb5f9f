"""The /v1/responses bytes: exactly the Responses API's event sequence and objects, each valid for the official
openai client's own types (openai.types.responses), built from the same events as chat's sinks get."""

from __future__ import annotations

import copy
import json

import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from trtpipe.serve import errors
from trtpipe.serve.api.response_events import ResponsesJsonSink, response_sink, responses_usage
from trtpipe.serve.openai.choice_stream import ChoiceDone, TextDelta
from trtpipe.serve.openai.tool_calls import ReasoningDelta, ToolCallDelta

EVENT = TypeAdapter(ResponseStreamEvent)
SETTINGS = {"instructions": None, "max_output_tokens": None, "metadata": {}, "parallel_tool_calls": True,
            "previous_response_id": None, "service_tier": "default", "store": True, "temperature": 1.0,
            "text": {"format": {"type": "text"}}, "tool_choice": "auto", "tools": [], "top_p": 1.0,
            "truncation": "disabled", "user": None, "safety_identifier": None}
USAGE = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}
EVENTS = [ReasoningDelta(0, "think"), ReasoningDelta(0, "ing"), TextDelta(0, 'Say "hé"'), TextDelta(0, ""),
          TextDelta(0, "\n"), ToolCallDelta(0, 0, "call_1", "f", ""), ToolCallDelta(0, 0, None, None, '{"a"'),
          ToolCallDelta(0, 0, None, None, ":1}"), ToolCallDelta(0, 1, "call_2", "g", ""),
          ToolCallDelta(0, 1, None, None, "{}")]


def with_cache_writes(obj: dict) -> dict:
    """NOTE: trtpipe leaves out usage.input_tokens_details.cache_write_tokens (the engine does not say what it
    writes to its prefix cache; the client reads the absent field as None); the client's strict model wants it."""
    obj = copy.deepcopy(obj)
    response = obj.get("response", obj)
    if response.get("usage"):
        response["usage"]["input_tokens_details"]["cache_write_tokens"] = 0
    return obj


def parse_sse(body: bytes) -> list[dict]:
    events = []
    for block in body.decode().split("\n\n")[:-1]:
        kind, data = block.split("\n")
        event = json.loads(data.removeprefix("data: "))
        assert kind == f"event: {event['type']}"
        EVENT.validate_python(with_cache_writes(event))
        events.append(event)
    return events


def run(sink, events=EVENTS, finish="stop", usage=USAGE):
    out = [sink.delta(ev) for ev in events] + [sink.choice_done(ChoiceDone(0, finish, 5)), sink.end(usage)]
    return b"".join(b for b in out if b is not None)


def sinks(stream: bool, stored: list):
    return response_sink(stream, "tiny-llama", SETTINGS, lambda r, n: stored.append((r, n)), lambda t: len(t))


def test_reasoning_text_and_two_calls_stream_as_three_kinds_of_items_in_the_exact_event_order():
    stored = []
    events = parse_sse(run(sinks(True, stored)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done",
        "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert [(i["type"], i["status"]) for i in final["output"]] == [
        ("reasoning", "completed"), ("message", "completed"), ("function_call", "completed"),
        ("function_call", "completed")]
    assert final["output"][1]["content"][0]["text"] == 'Say "hé"\n'
    assert [(c["call_id"], c["name"], c["arguments"]) for c in final["output"][2:]] == [
        ("call_1", "f", '{"a":1}'), ("call_2", "g", "{}")]
    assert [e["output_index"] for e in events if e["type"].endswith(".delta")] == [0, 0, 1, 1, 2, 2, 3]
    assert final["status"] == "completed" and final["completed_at"] is not None
    Response.model_validate(with_cache_writes(final))
    assert stored == [(final, len("thinking") + len('Say "hé"\n') + len('{"a":1}') + len("{}"))]


def test_the_json_body_is_the_streams_final_response():
    streamed, plain = [], []
    final = parse_sse(run(sinks(True, streamed)))[-1]["response"]
    body = json.loads(run(sinks(False, plain)))
    Response.model_validate(with_cache_writes(body))

    def without_ids(r):
        return {**r, "id": None, "created_at": None, "completed_at": None,
                "output": [{**i, "id": None} for i in r["output"]]}

    assert without_ids(body) == without_ids(final) and plain[0][0] == body


def test_the_first_event_snapshot_is_in_progress_with_no_output_and_no_usage():
    created = parse_sse(run(sinks(True, [])))[0]["response"]
    assert (created["status"], created["output"], created["usage"], created["error"]) == ("in_progress", [], None, None)
    assert created["object"] == "response" and created["model"] == "tiny-llama" and created["id"].startswith("resp_")


def test_running_out_of_tokens_leaves_the_last_item_and_the_response_incomplete():
    events = parse_sse(run(sinks(True, []), [TextDelta(0, "ab")], finish="length"))
    assert events[-2]["item"]["status"] == "incomplete" and events[-1]["type"] == "response.incomplete"
    final = events[-1]["response"]
    assert (final["status"], final["incomplete_details"], final["completed_at"]) == (
        "incomplete", {"reason": "max_output_tokens"}, None)


def test_no_output_at_all_is_a_completed_response_with_no_items():
    events = parse_sse(run(sinks(True, []), []))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.completed"]
    assert events[-1]["response"]["output"] == []


def test_a_failure_after_the_stream_began_is_an_error_event_then_response_failed_with_the_output_so_far():
    sink = sinks(True, [])
    first = parse_sse(sink.delta(TextDelta(0, "partial")))
    err = errors.deadline_exceeded(2.0)
    tail = parse_sse(sink.error(err))
    assert [e["type"] for e in tail] == ["error", "response.failed"]
    assert tail[0] == {"type": "error", "code": "deadline_exceeded", "message": err.message, "param": None,
                       "sequence_number": len(first)}
    failed = tail[1]["response"]
    assert failed["status"] == "failed" and failed["error"] == {"code": "server_error", "message": err.message}
    assert failed["output"] == []  # only finished items: the message was still open (added, never done)


def test_a_failure_before_any_output_still_opens_with_response_created():
    events = parse_sse(sinks(True, []).error(errors.overloaded("1 running", 1)))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


@pytest.mark.parametrize("usage, reasoning_tokens, expected", [
    ({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}, 0,
     {"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2,
      "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 5}),
    ({**USAGE, "speculation": {"num_draft_tokens": 4, "num_accepted_tokens": 2, "acceptance_rate": 0.5}}, 3,
     {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 5,
      "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 12,
      "speculation": {"num_draft_tokens": 4, "num_accepted_tokens": 2, "acceptance_rate": 0.5}}),
])
def test_chat_usage_becomes_the_responses_usage(usage, reasoning_tokens, expected):
    assert responses_usage(usage, reasoning_tokens) == expected


def test_reasoning_tokens_are_counted_on_the_reasoning_text():
    counted = []
    sink = ResponsesJsonSink({"id": "resp_1", "created_at": 1, "model": "m"}, SETTINGS, lambda r, n: None,
                             lambda text: counted.append(text) or 9)
    body = json.loads(run(sink))
    assert counted == ["thinking"] and body["usage"]["output_tokens_details"] == {"reasoning_tokens": 9}
