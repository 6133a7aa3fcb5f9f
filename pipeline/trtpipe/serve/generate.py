"""One choice's text stream: engine token deltas -> detokenized, stop-string-filtered text events.

Both the streaming and the non-streaming paths consume this, so they produce the same text by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import AsyncIterator

from trtpipe.serve.registry import ServedModel
from trtpipe.serve.stop_strings import StopStringMatcher
from trtpipe.serve.triton_stream import Final, TokenDelta, TritonEngineClient
from trtpipe.serve.validation import Generation


@dataclass(frozen=True)
class TextDelta:
    index: int
    text: str


@dataclass(frozen=True)
class ChoiceDone:
    index: int
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0


@dataclass
class Timings:
    """Where the user feels latency: first text and the gaps between text deltas."""

    start: float
    first_text: float | None = None
    last_text: float | None = None


async def generate_choice(client: TritonEngineClient, model: ServedModel, gen: Generation,
                          index: int = 0) -> AsyncIterator[TextDelta | ChoiceDone]:
    call = gen.call
    if index and call.seed is not None:
        call = replace(call, seed=call.seed + index)  # n choices from one seed must still differ
    detok = model.text.detokenizer()
    stops = StopStringMatcher(gen.stop_strings)
    num_out = 0
    async for event in client.generate(model.engine_model, call):
        if isinstance(event, TokenDelta):
            num_out = event.num_output_tokens
            text, stopped = stops.feed(detok.add(event.token_ids))
            if text:
                yield TextDelta(index, text)
            if stopped:
                # Leaving the loop closes the engine stream, which cancels the rest of the generation.
                yield ChoiceDone(index, "stop", len(call.input_ids), num_out)
                return
        elif isinstance(event, Final):
            text, stopped = stops.feed(detok.flush())
            tail = text if stopped else text + stops.flush()
            if tail:
                yield TextDelta(index, tail)
            reason = "length" if event.num_output_tokens >= call.max_new_tokens and not stopped else "stop"
            yield ChoiceDone(index, reason, event.num_input_tokens, event.num_output_tokens,
                             event.num_draft_tokens, event.num_accepted_draft_tokens)
            return


def now() -> float:
    return time.perf_counter()
