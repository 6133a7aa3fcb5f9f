"""The bytes the client gets: SSE chunks and non-streamed bodies, in OpenAI's shapes (protocol.py).

Streaming is the hot path: a chunk is a precomputed head (id, object, created, model, fingerprint) plus
the choice, with one `json.dumps` of the text, so no dict is built and serialized per token.
"""

from __future__ import annotations

import json
from typing import Callable

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import ChoiceDone, LogprobEntries

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
NEG_INF = float("-inf")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def sse_error(err: RequestError) -> bytes:
    return b"data: " + _dumps(err.envelope()).encode() + b"\n\n"


def usage_dict(prompt_tokens: int, done: dict[int, ChoiceDone], speculative: bool) -> dict:
    completion = sum(d.completion_tokens for d in done.values())
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
             "total_tokens": prompt_tokens + completion}
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
                alternatives = [self._top_entry(t, v) for t, v in top or () if v > NEG_INF]
                content.append({"token": raw.decode("utf-8", "backslashreplace"), "logprob": lp,
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
                    if v > NEG_INF:
                        alternatives.setdefault(self.piece(t).decode("utf-8", "backslashreplace"), v)
            tops.append(alternatives)
        self.offsets[index] = offset
        # A token without alternatives (the echoed prompt's first) is null beside tokens that have them.
        return {"tokens": tokens, "token_logprobs": [e[1] for e in entries],
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
