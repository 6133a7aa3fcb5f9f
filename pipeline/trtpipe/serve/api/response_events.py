"""The bytes a /v1/responses client gets: the Response object, or its stream of typed events (the Responses API's
shapes; tests/unit/serve/api/test_response_events.py validates them against the official client's types).

The sinks take the lifecycle's calls as chat's do (chunks.py): `delta` per text / tool-call / reasoning event,
`choice_done`, `end` with the usage. `OutputItems` turns the events into output items in order: reasoning
(`reasoning`, reasoning_text), text (`message`, output_text), each call (`function_call`); an event of another
kind, or a new call, closes the item before it. A stream is

    response.created, response.in_progress,
    per item: response.output_item.added, [response.content_part.added], deltas
              (response.output_text.delta | response.reasoning_text.delta | response.function_call_arguments.delta),
              the matching .done, [response.content_part.done], response.output_item.done,
    response.completed (or response.incomplete when `max_output_tokens` ran out)

each `event: <type>` with `data:` JSON carrying `type` and `sequence_number` (0, 1, ...); no `[DONE]`. A failure
after the stream began is an `error` event and then `response.failed`.
NOTE: response.created goes out with the first output (in the same write), not at admission: until then a failure
(queue full, engine down) is still an HTTP status with the error envelope, as on the chat routes.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Callable

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import ChoiceDone, TextDelta
from trtpipe.serve.openai.tool_calls import ReasoningDelta, ToolCallDelta

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
# The delta event of each item type, and whether it has a content part (content_index).
DELTA = {"message": "response.output_text.delta", "reasoning": "response.reasoning_text.delta",
         "function_call": "response.function_call_arguments.delta"}
ID_PREFIX = {"message": "msg", "reasoning": "rs", "function_call": "fc"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def _part(kind: str, text: str) -> dict:
    if kind == "message":
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"type": "reasoning_text", "text": text}


class OutputItems:
    """One response's output items, built from its choice's events. Each method returns the stream events it adds,
    as (type, payload) pairs. A delta's payload is its text: it is always the last event `feed` returns, and the
    SSE sink writes it after the open item's `delta_head`."""

    def __init__(self):
        self.items: list[dict] = []  # closed
        self.open: dict | None = None
        self.delta_head = ""
        self._parts: list[str] = []
        self.num_chars = 0
        self.reasoning_text: list[str] = []

    def feed(self, ev: TextDelta | ToolCallDelta | ReasoningDelta) -> list:
        out = []
        if type(ev) is ToolCallDelta:
            if ev.name is not None:
                out += self.close("completed")
                out += self._start({"id": new_id("fc"), "type": "function_call", "status": "in_progress",
                                    "arguments": "", "call_id": ev.call_id, "name": ev.name})
            text = ev.arguments
        else:
            text = ev.text
            if not text:
                return out
            kind = "message" if type(ev) is TextDelta else "reasoning"
            if self.open is None or self.open["type"] != kind:
                out += self.close("completed")
                item = {"id": new_id(ID_PREFIX[kind]), "type": kind, "status": "in_progress"}
                item |= {"content": [], "role": "assistant"} if kind == "message" else {"summary": [], "content": []}
                out += self._start(item)
            if kind == "reasoning":
                self.reasoning_text.append(text)
        if text:
            self._parts.append(text)
            self.num_chars += len(text)
            out.append((DELTA[self.open["type"]], text))
        return out

    def _start(self, item: dict) -> list:
        self.open, self._parts = item, []
        # Every delta of this item starts the same: its JSON up to `"delta":`, written once here.
        self.delta_head = _dumps({"type": DELTA[item["type"]], **self.where()})[:-1] + ',"delta":'
        out = [("response.output_item.added", {"output_index": len(self.items), "item": item})]
        if item["type"] != "function_call":
            out.append(("response.content_part.added", {**self.where(), "part": _part(item["type"], "")}))
        return out

    def where(self) -> dict:
        """The open item's place, as its events name it."""
        place = {"item_id": self.open["id"], "output_index": len(self.items)}
        return place if self.open["type"] == "function_call" else {**place, "content_index": 0}

    def close(self, status: str) -> list:
        """Close the open item (if any) with `status` (completed, or incomplete when the tokens ran out)."""
        item = self.open
        if item is None:
            return []
        text, where, kind = "".join(self._parts), self.where(), item["type"]
        if kind == "function_call":
            final = {**item, "status": status, "arguments": text}
            out = [("response.function_call_arguments.done", {**where, "arguments": text})]
        else:
            part = _part(kind, text)
            final = {**item, "status": status, "content": [part]}
            done = {"text": text, "logprobs": []} if kind == "message" else {"text": text}
            out = [(DELTA[kind][:-len("delta")] + "done", {**where, **done}),
                   ("response.content_part.done", {**where, "part": part})]
        out.append(("response.output_item.done", {"output_index": where["output_index"], "item": final}))
        self.items.append(final)
        self.open = None
        return out


def responses_usage(usage: dict, num_reasoning_tokens: int) -> dict:
    """Chat's usage -> the Responses API's. NOTE: cached_tokens is 0 where the engine does not report its prefix
    reuse; reasoning_tokens count the reasoning text re-tokenized (the choice stream splits text, not tokens)."""
    out = {"input_tokens": usage["prompt_tokens"],
           "input_tokens_details": {"cached_tokens": usage.get("prompt_tokens_details", {}).get("cached_tokens", 0)},
           "output_tokens": usage["completion_tokens"],
           "output_tokens_details": {"reasoning_tokens": num_reasoning_tokens},
           "total_tokens": usage["total_tokens"]}
    if "speculation" in usage:
        out["speculation"] = usage["speculation"]
    return out


def _error_code(err: RequestError) -> str:
    """A failure's `code` in the Response object's `error` (the Responses API's set)."""
    if err.status == 429:
        return "rate_limit_exceeded"
    return "server_error" if err.status >= 500 else "invalid_prompt"


class _ResponseSink:
    """What both sinks share: the output items, the finish, and the Response object at each stage."""

    def __init__(self, head: dict, settings: dict, on_end: Callable[[dict, int], None],
                 count_tokens: Callable[[str], int]):
        """`head`: id, created_at, model. `on_end(response, num_chars)`: the finished Response object (to store)."""
        self.head, self.settings, self.on_end, self.count_tokens = head, settings, on_end, count_tokens
        self.output = OutputItems()
        self.finish_reason: str | None = None

    def response(self, status: str, **fields) -> dict:
        out = {"id": self.head["id"], "object": "response", **self.head, "status": status, "background": False,
               "completed_at": None,
               "error": None, "incomplete_details": None, **self.settings, "output": self.output.items, "usage": None}
        return out | fields

    def _close(self, done: ChoiceDone) -> list:
        self.finish_reason = done.finish_reason
        return self.output.close("incomplete" if done.finish_reason == "length" else "completed")

    def _final(self, usage: dict) -> dict:
        reasoning = "".join(self.output.reasoning_text)
        usage = responses_usage(usage, self.count_tokens(reasoning) if reasoning else 0)
        if self.finish_reason == "length":
            final = self.response("incomplete", incomplete_details={"reason": "max_output_tokens"}, usage=usage)
        else:
            final = self.response("completed", completed_at=int(time.time()), usage=usage)
        self.on_end(final, self.output.num_chars)
        return final


class ResponsesSseSink(_ResponseSink):
    streams = True

    def __init__(self, *args):
        super().__init__(*args)
        self.sequence_number = 0
        self.started = False

    def _write(self, events: list) -> bytes | None:
        if not self.started:
            self.started = True
            snapshot = self.response("in_progress")
            events = [("response.created", {"response": snapshot}),
                      ("response.in_progress", {"response": snapshot})] + events
        if not events:
            return None
        out = []
        for kind, payload in events:
            if type(payload) is str:  # a delta (the hot path): no dict
                data = self.output.delta_head + _dumps(payload) + (
                    ',"logprobs":[]' if kind == DELTA["message"] else "") + ',"sequence_number":' + \
                    str(self.sequence_number) + "}"
            else:
                data = _dumps({"type": kind, **payload, "sequence_number": self.sequence_number})
            self.sequence_number += 1
            out.append(f"event: {kind}\ndata: {data}\n\n")
        return "".join(out).encode()

    def echo(self, index: int, text: str) -> None:
        return None  # never asked: a Responses request does not echo its prompt

    def delta(self, ev) -> bytes | None:
        return self._write(self.output.feed(ev))

    def choice_done(self, done: ChoiceDone) -> bytes | None:
        return self._write(self._close(done))

    def end(self, usage: dict) -> bytes:
        final = self._final(usage)
        return self._write([(f"response.{final['status']}", {"response": final})])

    def error(self, err: RequestError) -> bytes:
        """The stream's end after a failure: an `error` event, then response.failed with what was made so far."""
        failed = self.response("failed", error={"code": _error_code(err), "message": err.message})
        return self._write([("error", {"code": err.code, "message": err.message, "param": err.param}),
                            ("response.failed", {"response": failed})])


class ResponsesJsonSink(_ResponseSink):
    """The Response object, built from the same events as the stream."""

    streams = False

    def echo(self, index: int, text: str) -> None:
        return None

    def delta(self, ev) -> None:
        self.output.feed(ev)

    def choice_done(self, done: ChoiceDone) -> None:
        self._close(done)

    def end(self, usage: dict) -> bytes:
        return _dumps(self._final(usage)).encode()


def response_sink(stream: bool, model_name: str, settings: dict, on_end, count_tokens
                  ) -> ResponsesSseSink | ResponsesJsonSink:
    head = {"id": new_id("resp"), "created_at": int(time.time()), "model": model_name}
    return (ResponsesSseSink if stream else ResponsesJsonSink)(head, settings, on_end, count_tokens)
