"""The bytes the client gets: SSE chunks and non-streamed bodies, in OpenAI's shapes (protocol.py).

Streaming is the hot path: a chunk is a precomputed head (id, object, created, model, fingerprint) plus
the choice, with one `json.dumps` of the text, so no dict is built and serialized per token.

A request's events go to one of two sinks, `SseSink` (a chunk per event) or `JsonSink` (one body at the end);
the request loop that feeds them is one (lifecycle.py). Both take the same calls in the same order: `echo` per
choice (when the prompt is echoed before any token), `delta` per text / tool-call / reasoning event,
`choice_done` per finished choice, `end` with the usage; each returns the bytes to send now, or None.
"""

from __future__ import annotations

import json
import math
from typing import Callable

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import ChoiceDone, LogprobEntries, TextDelta
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.tool_calls import ReasoningDelta, ToolCallDelta
from trtpipe.serve.openai.validation import Generation
from trtpipe.serve.protocol import completion_id, now

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
# OpenAI's log-prob for a token that had no chance: JSON has no -Infinity (nor NaN, which an extreme
# repetition_penalty can give), and a client's JSON parser must never meet either.
IMPOSSIBLE_LOGPROB = -9999.0
# allow_nan=False: anything non-finite left anywhere is an error here, never invalid JSON on the wire.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def finite_logprob(lp: float | None) -> float | None:
    return lp if lp is None or math.isfinite(lp) else IMPOSSIBLE_LOGPROB


def sse_error(err: RequestError) -> bytes:
    return b"data: " + _dumps(err.envelope()).encode() + b"\n\n"


def usage_dict(prompt_tokens: int, done: dict[int, ChoiceDone], speculative: bool, n: int = 1) -> dict:
    """`n`: choices per prompt (choice i samples prompt i // n)."""
    completion = sum(d.completion_tokens for d in done.values())
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
             "total_tokens": prompt_tokens + completion}
    reused = [(i // n, d.prefix_cache[1]) for i, d in done.items() if d.prefix_cache is not None]
    if reused:  # the engine said how much of each prompt its prefix cache held; a prompt counts once
        cached: dict[int, int] = {}
        for prompt, hit in reused:
            cached[prompt] = max(cached.get(prompt, 0), hit)
        usage["prompt_tokens_details"] = {"cached_tokens": sum(cached.values())}
    if speculative:
        drafted = sum(d.num_draft_tokens for d in done.values())
        accepted = sum(d.num_accepted_draft_tokens for d in done.values())
        usage["speculation"] = {"num_draft_tokens": drafted, "num_accepted_tokens": accepted,
                                "acceptance_rate": accepted / drafted if drafted else None}
    return usage


class Logprobs:
    """Formats (token id, logprob) entries; keeps each completion choice's running text offset."""

    def __init__(self, piece: Callable[[int], bytes], chat: bool, offsets: dict[int, int]):
        self.piece, self.chat, self.offsets = piece, chat, offsets

    def format(self, index: int, entries: LogprobEntries | None):
        if entries is None:
            return None
        if self.chat:
            content = []
            for token_id, lp, top in entries:
                raw = self.piece(token_id)
                # A token the grammar (or top-k/top-p) ruled out (-inf) is no alternative.
                alternatives = [self._top_entry(t, v) for t, v in top or () if math.isfinite(v)]
                content.append({"token": raw.decode("utf-8", "backslashreplace"), "logprob": finite_logprob(lp),
                                "bytes": list(raw), "top_logprobs": alternatives})
            return {"content": content, "refusal": None}
        tokens, offsets, offset = [], [], self.offsets.get(index, 0)
        tops: list[dict | None] = []
        for token_id, _, top in entries:
            token = self.piece(token_id).decode("utf-8", "backslashreplace")
            tokens.append(token)
            offsets.append(offset)
            offset += len(token)
            alternatives: dict[str, float] | None = None
            if top is not None:
                # A dict by token text: alternatives that decode alike collapse, keeping the likelier one.
                alternatives = {}
                for t, v in top:
                    if math.isfinite(v):
                        alternatives.setdefault(self.piece(t).decode("utf-8", "backslashreplace"), v)
            tops.append(alternatives)
        self.offsets[index] = offset
        # A token without alternatives (the echoed prompt's first) is null beside tokens that have them.
        return {"tokens": tokens, "token_logprobs": [finite_logprob(e[1]) for e in entries],
                "top_logprobs": tops if any(t is not None for t in tops) else None, "text_offset": offsets}

    def _top_entry(self, token_id: int, lp: float) -> dict:
        raw = self.piece(token_id)
        return {"token": raw.decode("utf-8", "backslashreplace"), "logprob": lp, "bytes": list(raw)}

    @staticmethod
    def join(parts: list[dict | None], chat: bool) -> dict | None:
        parts = [p for p in parts if p is not None]
        if not parts:
            return None
        if chat:
            return {"content": [c for p in parts for c in p["content"]], "refusal": None}
        with_top = any(p["top_logprobs"] is not None for p in parts)
        joined_top = [x for p in parts for x in (p["top_logprobs"] or [None] * len(p["tokens"]))] if with_top else None
        return {k: [x for p in parts for x in p[k]] for k in ("tokens", "token_logprobs", "text_offset")} | {
            "top_logprobs": joined_top}


class ChunkWriter:
    """SSE chunks of one request."""

    def __init__(self, *, chat: bool, request_id: str, created: int, model: str, fingerprint: str | None,
                 include_usage: bool, logprobs: Logprobs | None):
        obj = "chat.completion.chunk" if chat else "text_completion"
        head = _dumps({"id": request_id, "object": obj, "created": created, "model": model,
                       "system_fingerprint": fingerprint})
        self._head = "data: " + head[:-1] + ',"choices":['
        self._tail = '],"usage":null}\n\n' if include_usage else "]}\n\n"
        self.chat = chat
        self.logprobs = logprobs
        self._started: set[int] = set()

    def _lp(self, index: int, entries) -> str:
        if self.logprobs is None:
            return "null"
        return _dumps(self.logprobs.format(index, entries))

    def text(self, index: int, text: str, entries: LogprobEntries | None = None) -> bytes:
        lp = "null" if entries is None and self.logprobs is None else self._lp(index, entries)
        if self.chat:
            if index in self._started:
                delta = '{"content":' + _dumps(text) + "}"
            else:
                # The role rides on the first text chunk: there is no content-less first chunk.
                self._started.add(index)
                delta = '{"role":"assistant","content":' + _dumps(text) + "}"
            choice = '{"index":' + str(index) + ',"delta":' + delta + ',"logprobs":' + lp + ',"finish_reason":null}'
        else:
            choice = '{"index":' + str(index) + ',"text":' + _dumps(text) + ',"logprobs":' + lp + \
                     ',"finish_reason":null}'
        return (self._head + choice + self._tail).encode()

    def delta(self, index: int, fields: dict, entries: LogprobEntries | None = None) -> bytes:
        """A chat chunk with any delta fields (tool_calls, reasoning_content); the first carries the role."""
        if index not in self._started:
            self._started.add(index)
            fields = {"role": "assistant", "content": None, **fields}
        lp = "null" if entries is None and self.logprobs is None else self._lp(index, entries)
        choice = '{"index":' + str(index) + ',"delta":' + _dumps(fields) + ',"logprobs":' + lp + \
                 ',"finish_reason":null}'
        return (self._head + choice + self._tail).encode()

    def tool_call(self, index: int, call_index: int, call_id: str | None, name: str | None, arguments: str,
                  entries: LogprobEntries | None = None) -> bytes:
        """OpenAI's streamed call: the first delta has id, type and name with empty arguments, then pieces."""
        call: dict = {"index": call_index}
        if name is not None:
            call |= {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        else:
            call["function"] = {"arguments": arguments}
        return self.delta(index, {"tool_calls": [call]}, entries)

    def finish(self, done: ChoiceDone) -> bytes:
        lp = self._lp(done.index, done.logprobs) if done.logprobs else "null"
        reason = '"' + done.finish_reason + '"'
        if self.chat:
            delta = "{}" if done.index in self._started else '{"role":"assistant","content":""}'
            choice = '{"index":' + str(done.index) + ',"delta":' + delta + ',"logprobs":' + lp + \
                     ',"finish_reason":' + reason + "}"
        else:
            choice = '{"index":' + str(done.index) + ',"text":"","logprobs":' + lp + ',"finish_reason":' + reason + "}"
        return (self._head + choice + self._tail).encode()

    def usage(self, usage: dict) -> bytes:
        return (self._head + '],"usage":' + _dumps(usage) + "}\n\n").encode()


def full_response(*, chat: bool, request_id: str, created: int, model: str, fingerprint: str | None,
                  texts: list[str], done: dict[int, ChoiceDone], logprobs: list[dict | None] | None,
                  usage: dict, extras: list[dict] | None = None) -> bytes:
    """extras[i]: further message fields of chat choice i (tool_calls, reasoning_content)."""
    choices = []
    for i, text in enumerate(texts):
        lp = logprobs[i] if logprobs is not None else None
        if chat:
            message = {"role": "assistant", "content": text}
            if extras is not None and extras[i]:
                message |= extras[i]
                if message.get("tool_calls") and not text:
                    message["content"] = None
            choices.append({"index": i, "message": message, "logprobs": lp, "finish_reason": done[i].finish_reason})
        else:
            choices.append({"index": i, "text": text, "logprobs": lp, "finish_reason": done[i].finish_reason})
    return _dumps({"id": request_id, "object": "chat.completion" if chat else "text_completion", "created": created,
                   "model": model, "system_fingerprint": fingerprint, "choices": choices, "usage": usage}).encode()


class SseSink:
    streams = True

    def __init__(self, writer: ChunkWriter, include_usage: bool):
        self.writer, self.include_usage = writer, include_usage

    def echo(self, index: int, text: str) -> bytes:
        return self.writer.text(index, text)

    def delta(self, ev: TextDelta | ToolCallDelta | ReasoningDelta) -> bytes:
        if type(ev) is TextDelta:
            return self.writer.text(ev.index, ev.text, ev.logprobs)
        if type(ev) is ToolCallDelta:
            return self.writer.tool_call(ev.index, ev.call_index, ev.call_id, ev.name, ev.arguments, ev.logprobs)
        return self.writer.delta(ev.index, {"reasoning_content": ev.text}, ev.logprobs)

    def choice_done(self, done: ChoiceDone) -> bytes:
        return self.writer.finish(done)

    def end(self, usage: dict) -> bytes:
        return self.writer.usage(usage) + DONE if self.include_usage else DONE

    def error(self, err: RequestError) -> bytes:
        return sse_error(err) + DONE


class JsonSink:
    """The non-streamed response, built from the same events as the stream."""

    streams = False

    def __init__(self, *, chat: bool, num_choices: int, logprobs: Logprobs | None, **head):
        self.chat, self.logprobs, self.head = chat, logprobs, head
        self.texts: list[list[str]] = [[] for _ in range(num_choices)]
        self.lp_parts: list[list] = [[] for _ in range(num_choices)]
        self.extras: list[dict] = [{} for _ in range(num_choices)]  # tool_calls, reasoning_content
        self.done: dict[int, ChoiceDone] = {}

    def echo(self, index: int, text: str) -> None:
        self.texts[index].append(text)

    def delta(self, ev: TextDelta | ToolCallDelta | ReasoningDelta) -> None:
        if type(ev) is TextDelta:
            self.texts[ev.index].append(ev.text)
        elif type(ev) is ReasoningDelta:
            extra = self.extras[ev.index]
            extra["reasoning_content"] = extra.get("reasoning_content", "") + ev.text
        else:
            calls = self.extras[ev.index].setdefault("tool_calls", [])
            if ev.name is not None:
                calls.append({"id": ev.call_id, "type": "function", "function": {"name": ev.name, "arguments": ""}})
            calls[ev.call_index]["function"]["arguments"] += ev.arguments
        self._logprobs(ev.index, ev.logprobs)

    def choice_done(self, done: ChoiceDone) -> None:
        self.done[done.index] = done
        self._logprobs(done.index, done.logprobs)

    def _logprobs(self, index: int, entries) -> None:
        if entries is not None and self.logprobs is not None:
            self.lp_parts[index].append(self.logprobs.format(index, entries))

    def end(self, usage: dict) -> bytes:
        joined = [Logprobs.join(p, self.chat) for p in self.lp_parts] if self.logprobs is not None else None
        return full_response(chat=self.chat, **self.head, texts=["".join(t) for t in self.texts], done=self.done,
                             logprobs=joined, usage=usage, extras=self.extras if self.chat else None)


def sink_for(req, model: ServedModel, gen: Generation, *, chat: bool) -> SseSink | JsonSink:
    """The sink a request asks for (`stream`), with its response id, creation time and fingerprint."""
    head = dict(request_id=completion_id("chatcmpl" if chat else "cmpl"), created=now(), model=model.name,
                fingerprint=model.manifest.fingerprint)
    logprobs = Logprobs(model.text.token_piece, chat, {}) if gen.logprobs else None
    if req.stream:
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        return SseSink(ChunkWriter(chat=chat, include_usage=include_usage, logprobs=logprobs, **head), include_usage)
    return JsonSink(chat=chat, num_choices=gen.num_choices, logprobs=logprobs, **head)

