"""Where a request's events go: an SSE stream of chunks, or one JSON body. The request loop is one (lifecycle.py).

Both sinks take the same calls in the same order: `echo` per choice (when the prompt is echoed before any
token), `delta` per text / tool-call / reasoning event, `choice_done` per finished choice, `end` with the usage.
Each returns the bytes to send now, or None. `SseSink` returns a chunk for every call; `JsonSink` collects and
returns the whole body from `end`.
"""

from __future__ import annotations

from trtpipe.serve.api.chunks import DONE, ChunkWriter, Logprobs, full_response
from trtpipe.serve.openai.choice_stream import ChoiceDone, TextDelta
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.tool_calls import ReasoningDelta, ToolCallDelta
from trtpipe.serve.openai.validation import Generation
from trtpipe.serve.protocol import completion_id, now


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

