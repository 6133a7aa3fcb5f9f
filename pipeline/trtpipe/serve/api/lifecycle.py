"""One generation request from admission to release: `RequestLifecycle`, the one owner of its mutable state.

    created  -> try_acquire: admitted now, queued in FIFO order, or a 429 before anything else happens
    run()    -> wait for admission (queue time), open the engine streams (one per choice, on one replica,
                through the draft-target Speculator when the model has a draft), pass every event to the sink
                while timing it (TTFT, inter-chunk latency), then the usage and the finish metrics
    release  -> exactly once, however the request ended: the admission slot (or the queue place) is given
                back, and a request that ended before it finished counts as `abort`

The loop is the same for a stream and a JSON body; only the sink differs (chunks.py). The ASGI response
(response.py) drives `run()` and calls `release()` and `record_error()`.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Protocol

from trtpipe.serve.api.admission import Admission
from trtpipe.serve.api.chunks import usage_dict
from trtpipe.serve.api.metrics import FrontendMetrics, ModelMetrics
from trtpipe.serve.engine_client.calls import OUTPUT_IDS, OUTPUT_KV_REUSED, OUTPUT_LOG_PROBS, OUTPUT_PROMPT, OUTPUT_TOP
from trtpipe.serve.engine_client.replicas import ReplicaPool
from trtpipe.serve.engine_client.speculation import AdaptiveSpeculation, Speculator
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import ChoiceDone, generate_choice, merge
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.tool_calls import shape_choice
from trtpipe.serve.openai.validation import Generation

perf_counter = time.perf_counter


class Sink(Protocol):
    streams: bool

    def echo(self, index: int, text: str) -> bytes | None: ...
    def delta(self, ev) -> bytes | None: ...
    def choice_done(self, done: ChoiceDone) -> bytes | None: ...
    def end(self, usage: dict) -> bytes: ...
    # A streaming sink's last bytes after a failure, once the stream has begun (an error event; chat's + [DONE]).
    def error(self, err: RequestError) -> bytes: ...


def speculates(model: ServedModel, gen: Generation, draft: tuple[ServedModel, int] | None) -> bool:
    """Whether this request runs as draft-target rounds (the model has a draft, and the request allows it)."""
    if draft is None:
        return False
    # Speculation rounds carry no top alternatives (the verify step's are not the plain path's).
    call = gen.calls[0]
    if call.has_context_dependent_sampling or gen.top_logprobs or (gen.echo and gen.logprobs):
        return False
    # NOTE: a seeded sampled request is never speculated. Its rounds (plain or draft, and where they end) follow the
    # server's speculation state, which other requests change, so its text could not be the same every time; plain
    # decoding gives the same text for a seed, with a draft as without. Greedy requests are exact either way.
    if call.seed is not None and not call.is_greedy:
        return False
    # A guided round resumes the grammar with trtpipe's guided_decoding_prefix_len (an engine whose spec says it
    # can), and learns that the grammar is complete from the end-of-sequence id, which ignore_eos takes away.
    return call.guide_type is None or (call.end_id is not None and model.spec.resumes_guided_decoding
                                       and draft[0].spec.resumes_guided_decoding)


class RequestLifecycle:
    """One admitted (or queued) generation request. Not reused: one object, one `run()`, one `release()`."""

    def __init__(self, model: ServedModel, gen: Generation, *, admission: Admission, pool: ReplicaPool,
                 metrics: FrontendMetrics, arrival: float, draft: tuple[ServedModel, int] | None = None,
                 controller: AdaptiveSpeculation | None = None):
        """`draft` (the draft model and its max draft length) and `controller`: only when `speculates()`."""
        self.model, self.gen, self.arrival = model, gen, arrival
        self.admission, self.pool, self.metrics = admission, pool, metrics
        self.model_metrics: ModelMetrics = metrics.model(model.name)
        self.draft, self.controller = draft, controller  # set when the request runs as speculation rounds
        self.units = gen.num_choices
        # Admitted now, or queued in order; a full queue raises the 429 here, before any response starts.
        self.queued: asyncio.Future | None = admission.try_acquire(self.units, gen.priority)
        self.admitted = self.queued is None
        self.finished = False
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.done: dict[int, ChoiceDone] = {}

    @property
    def speculative(self) -> bool:
        return self.draft is not None

    # --- the one loop --------------------------------------------------------------------------------------
    async def run(self, sink: Sink) -> AsyncIterator[bytes]:
        """Every byte the client gets for this request, through `sink`. Releases on the way out, however it ends."""
        gen = self.gen
        try:
            await self._admit()
            if gen.echo and not gen.logprobs:  # with logprobs, generate_choice sends it with the prompt's
                for i in range(gen.num_choices):
                    chunk = sink.echo(i, gen.prompt_texts[i // gen.n])
                    if chunk is not None:
                        yield chunk
            async for chunk in self._events(sink):
                yield chunk
            if not sink.streams:
                self.t_last = perf_counter()
            yield sink.end(self._finish())
        finally:
            self.release()

    async def _events(self, sink: Sink) -> AsyncIterator[bytes]:
        ttft, itl = self.model_metrics.ttft, self.model_metrics.itl
        for_itl = sink.streams  # inter-chunk latency is what a streaming client sees between chunks
        async for ev in self._choice_events():
            if type(ev) is ChoiceDone:
                self.done[ev.index] = ev
                chunk = sink.choice_done(ev)
            else:
                t = perf_counter()
                if self.t_first is None:
                    ttft.observe(t - self.arrival)
                    self.t_first = t
                elif for_itl:
                    itl.observe(t - self.t_last)
                self.t_last = t
                chunk = sink.delta(ev)
            if chunk is not None:
                yield chunk

    # --- admission and release -----------------------------------------------------------------------------
    async def _admit(self) -> None:
        if self.queued is not None:
            await self.admission.wait(self.queued, self.units)
            self.queued, self.admitted = None, True
        self.model_metrics.queue_time.observe(perf_counter() - self.arrival)

    def release(self) -> None:
        """Give back what the request holds; idempotent. Ending before the finish (client gone, deadline, drain,
        engine error) counts each choice as an `abort`."""
        ended_early = not self.finished and (self.admitted or self.queued is not None)
        if self.admitted:
            self.admitted = False
            self.admission.release(self.units)
        elif self.queued is not None:
            self.admission.abandon(self.queued, self.units)
            self.queued = None
        if ended_early:
            self.model_metrics.success["abort"].inc(self.units)

    def record_error(self, err: RequestError) -> None:
        self.metrics.error(self.model.name, err.type, err.status)

    # --- engine streams ------------------------------------------------------------------------------------
    def _choice_events(self) -> AsyncIterator:
        gen = self.gen
        source = self._speculative_source() if self.speculative else self._plain_source()
        choices = [generate_choice(source, self.model, gen, i) for i in range(gen.num_choices)]
        if gen.tool_plan is not None or gen.reasoning_prompt is not None:
            choices = [shape_choice(c, i, gen.tool_plan, gen.reasoning_prompt, gen.logprobs)
                       for i, c in enumerate(choices)]
        return choices[0] if len(choices) == 1 else merge(choices)

    def _plain_source(self):
        gen, pool, engine = self.gen, self.pool, self.model.engine_model
        outputs = (OUTPUT_IDS, OUTPUT_KV_REUSED) + ((OUTPUT_LOG_PROBS,) if gen.logprobs else ())
        if gen.top_logprobs:
            outputs += OUTPUT_TOP
        if gen.echo and gen.logprobs:
            outputs += OUTPUT_PROMPT
        pin: list = [None]  # all engine calls of this request go to one replica (its prefix cache)
        return lambda call: pool.generate(engine, call, outputs, pin)

    def _speculative_source(self):
        pool, mm = self.pool, self.model_metrics
        pin: list = [None]  # every round of every choice on one replica (its prefix cache)

        def on_round(drafted: int, accepted: int) -> None:
            mm.spec_drafts.inc()
            mm.spec_draft_tokens.inc(drafted)
            mm.spec_accepted_tokens.inc(accepted)

        draft, max_draft_len = self.draft
        speculator = Speculator(lambda name, call, outs: pool.generate(name, call, outs, pin),
                                self.model.engine_model, draft.engine_model, max_draft_len, self.controller,
                                lambda: self.admission.num_running, on_round)
        return speculator.generate

    # --- the end -------------------------------------------------------------------------------------------
    def _finish(self) -> dict:
        """Count the finished request once, and return its usage."""
        self.finished = True
        gen, mm, done = self.gen, self.model_metrics, self.done
        completion = sum(d.completion_tokens for d in done.values())
        mm.e2e.observe(perf_counter() - self.arrival)
        mm.prompt_tokens.inc(gen.num_prompt_tokens)
        mm.generation_tokens.inc(completion)
        mm.request_prompt_tokens.observe(gen.num_prompt_tokens)
        mm.request_generation_tokens.observe(completion)
        for d in done.values():
            mm.success["stop" if d.finish_reason == "tool_calls" else d.finish_reason].inc()
            if d.prefix_cache is not None:
                mm.prefix_cache_queries.inc(d.prefix_cache[0])
                mm.prefix_cache_hits.inc(d.prefix_cache[1])
        if completion > 1 and self.t_first is not None:
            mm.tpot.observe((self.t_last - self.t_first) / (completion - 1))
        return usage_dict(gen.num_prompt_tokens, done, self.speculative, gen.n)
