"""One choice's text stream: engine token deltas -> detokenized, stop-string-filtered text events.

Both the streaming and the non-streaming paths consume this, so they produce the same text by construction.
Log-probabilities travel with the text they belong to: a token whose text is still held back (an incomplete
UTF-8 character, a possible stop-string prefix) has its entry sent with the next text that goes out.

Stop strings are matched on text across token boundaries and never emitted: text that could be the start of
a stop string is held back until the next delta proves it is not.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, AsyncIterator, Callable

from trtpipe.serve.engine_client.calls import EngineCall, Final, TokenDelta
from trtpipe.serve.openai.served_models import ServedModel

if TYPE_CHECKING:
    from trtpipe.serve.openai.validation import Generation

# (token id, its log-prob, the top (id, log-prob) alternatives or None) per token.
LogprobEntries = list[tuple[int, float | None, list[tuple[int, float]] | None]]


class TextDelta:
    __slots__ = ("index", "text", "logprobs")

    def __init__(self, index: int, text: str, logprobs: LogprobEntries | None = None):
        self.index, self.text, self.logprobs = index, text, logprobs


class ChoiceDone:
    __slots__ = ("index", "finish_reason", "completion_tokens", "num_draft_tokens", "num_accepted_draft_tokens",
                 "logprobs", "prefix_cache")

    def __init__(self, index: int, finish_reason: str, completion_tokens: int, num_draft_tokens: int = 0,
                 num_accepted_draft_tokens: int = 0, logprobs: LogprobEntries | None = None,
                 prefix_cache: tuple[int, int] | None = None):
        self.index, self.finish_reason, self.completion_tokens = index, finish_reason, completion_tokens
        self.num_draft_tokens, self.num_accepted_draft_tokens = num_draft_tokens, num_accepted_draft_tokens
        self.logprobs = logprobs
        self.prefix_cache = prefix_cache  # (queried, hit) prompt tokens, where the engine reported its reuse


Stream = Callable[[EngineCall], AsyncIterator[TokenDelta | Final]]


async def generate_choice(stream: Stream, model: ServedModel, gen: Generation, index: int
                          ) -> AsyncIterator[TextDelta | ChoiceDone]:
    call = gen.choice_call(index)
    detok = model.text.detokenizer()
    stops = StopStringMatcher(gen.stop_strings, gen.include_stop_str) if gen.stop_strings else None
    stop_ids = {s[0] for s in call.stop_token_ids if len(s) == 1}
    pending: LogprobEntries | None = [] if gen.logprobs else None
    num_out, last_token = 0, None
    echo_pending = gen.echo and gen.logprobs  # the echo goes out with the prompt's log-probs, when they come
    async for event in stream(call):
        if type(event) is TokenDelta:
            if echo_pending:
                echo_pending = False
                yield TextDelta(index, gen.prompt_texts[index // gen.n], prompt_entries(call.input_ids, event.prompt))
            ids = event.token_ids
            num_out += len(ids)
            last_token = ids[-1]
            if pending is not None:
                lps = event.log_probs or [None] * len(ids)
                pending.extend(zip(ids, lps, event.top or [None] * len(ids)))
            text = detok.add(ids)
            if stops is not None:
                text, stopped = stops.feed(text)
                if stopped:
                    # Leaving the loop closes the engine stream, which cancels the rest of the generation.
                    if text:
                        yield TextDelta(index, text, pending)
                        pending = [] if pending is not None else None
                    yield ChoiceDone(index, "stop", num_out, logprobs=pending)
                    return
            if text:
                yield TextDelta(index, text, pending)
                if pending is not None:
                    pending = []
        elif type(event) is Final:
            if echo_pending:  # no token came: the prompt still is the echo
                yield TextDelta(index, gen.prompt_texts[index // gen.n], prompt_entries(call.input_ids, None))
            text = detok.flush()
            stopped = False
            if stops is not None:
                text, stopped = stops.feed(text)
                if not stopped:
                    text += stops.flush()
            if text:
                yield TextDelta(index, text, pending)
                pending = [] if pending is not None else None
            length = event.num_output_tokens >= call.max_new_tokens and last_token not in stop_ids
            reused = event.num_reused_blocks
            prefix = None if reused is None else (len(call.input_ids), reused * model.spec.tokens_per_block)
            yield ChoiceDone(index, "length" if length and not stopped else "stop", event.num_output_tokens,
                             event.num_draft_tokens, event.num_accepted_draft_tokens, pending, prefix)
            return


def prompt_entries(prompt_ids: list[int], prompt: tuple | None) -> LogprobEntries:
    """The echoed prompt's entries: the first token has no log-prob (nothing precedes it), as in OpenAI."""
    lps, top = prompt if prompt is not None else ([None] * (len(prompt_ids) - 1), None)
    tops = top or [None] * len(lps)
    return [(prompt_ids[0], None, None)] + list(zip(prompt_ids[1:], lps, tops))


async def merge(streams: list[AsyncIterator]) -> AsyncIterator:
    """Interleave several async streams; closing the merged stream closes (and so cancels) every input."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield item
        return
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(s):
        try:
            async for item in s:
                await queue.put(item)
        except Exception as e:  # noqa: BLE001 - re-raised in the consumer
            await queue.put(e)
        finally:
            await queue.put(end)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is end:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()


class StopStringMatcher:
    """`include_stop`: the stop string that ended the text is kept at its end (vLLM's include_stop_str_in_output);
    of stop strings found at the same place, the first in the request's list."""

    def __init__(self, stops: list[str], include_stop: bool = False):
        self.stops = [s for s in stops if s]
        self.include_stop = include_stop
        self._held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit now, whether a stop string was reached)."""
        if not self.stops:
            return text, False
        buf = self._held + text
        hits = [(i, s) for i, s in ((buf.find(s), s) for s in self.stops) if i >= 0]
        if hits:
            self._held = ""
            at, stop = min(hits, key=lambda h: h[0])
            return buf[:at] + (stop if self.include_stop else ""), True
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), keep, -1):
                if s.startswith(buf[-k:]):
                    keep = k
                    break
        self._held = buf[len(buf) - keep:]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held
