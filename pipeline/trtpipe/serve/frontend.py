"""The frontend's state and its one request path: admission -> choices -> bytes, with the metrics on the way.

`Frontend` owns the registry, the Triton replica pool, the per-model admission bounds and speculation
controllers, the requests in flight, readiness (health checks + canary) and the drain.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator

from trtpipe.serve.admission import Admission, Inflight
from trtpipe.serve.chunks import DONE, ChunkWriter, Logprobs, full_response, usage_dict
from trtpipe.serve.generate import ChoiceDone, TextDelta, generate_choice, merge
from trtpipe.serve.metrics import FrontendMetrics
from trtpipe.serve.protocol import completion_id
from trtpipe.serve.protocol import now as unix_now
from trtpipe.serve.registry import ModelRegistry, ServedModel
from trtpipe.serve.replicas import ReplicaPool
from trtpipe.serve.responses import GenerationResponse
from trtpipe.serve.speculation import AdaptiveSpeculation, Speculator
from trtpipe.serve.tool_calls import ReasoningDelta, ToolCallDelta, shape_choice
from trtpipe.serve.triton_stream import OUTPUT_IDS, OUTPUT_KV_REUSED, OUTPUT_LOG_PROBS, OUTPUT_PROMPT, OUTPUT_TOP
from trtpipe.serve.validation import Generation, RequestError

log = logging.getLogger("trtpipe.serve")
perf_counter = time.perf_counter


class Frontend:
    def __init__(self, settings, limits=None):
        """`limits`: shared_limits.SharedCounters when this is one of several API-server processes (the
        admission bounds are then counted across all of them); None: this process alone."""
        self.settings, self.limits = settings, limits
        self.registry = ModelRegistry(settings.repo, settings.chat_template)
        self.pool = ReplicaPool(list(settings.replica_urls))
        self.metrics = FrontendMetrics()
        self.inflight = Inflight()
        self.draining = False
        self._admissions: dict[str, Admission] = {}
        self._controllers: dict[str, AdaptiveSpeculation] = {}
        self._drafts = dict(settings.draft_models)
        self._health: asyncio.Task | None = None
        self.metrics.state.sources += [self._state_gauges, self.pool.gauges]

    # --- lifecycle ----------------------------------------------------------------------------------------
    async def start(self) -> None:
        s = self.settings
        # Load every model's tokenizer, template and limits now, off the event loop (a large tokenizer.json
        # takes a while to parse); the health loop keeps reloading published changes in a thread too.
        await asyncio.to_thread(self.registry.all)
        self._health = asyncio.create_task(self.pool.run_health_checks(
            lambda: asyncio.to_thread(self._canary_models), s.health_interval_s, s.canary_interval_s,
            s.health_timeout_s))

    async def stop(self) -> None:
        if self._health is not None:
            self._health.cancel()
        await self.pool.close()

    def readiness(self) -> tuple[bool, dict]:
        replicas = {r.url: bool(r.healthy) for r in self.pool.replicas}
        ok = not self.draining and self.pool.any_healthy and bool(self.registry.names())
        return ok, {"draining": self.draining, "replicas": replicas}

    async def drain(self, budget_s: float) -> int:
        """Stop admitting, let requests in flight finish within the budget, end the rest cleanly.
        Returns how many were ended."""
        self.draining = True
        if await self.inflight.wait_idle(budget_s):
            return 0
        ended = self.inflight.abort_all(RequestError(
            "the server is shutting down; the request was ended before it finished", type="service_unavailable",
            code="server_shutting_down", status=503))
        await self.inflight.wait_idle(5.0)
        return ended

    def check_accepting(self) -> None:
        if self.draining:
            raise RequestError("the server is shutting down and accepts no new requests", type="service_unavailable",
                               code="server_shutting_down", status=503)

    # --- models -------------------------------------------------------------------------------------------
    def served(self, name: str) -> ServedModel:
        model = self.registry.get(name)
        if model is None:
            raise RequestError(f"The model `{name}` does not exist. Available: {self.registry.names()}",
                               param="model", code="model_not_found", status=404)
        return model

    def draft_for(self, model: ServedModel) -> tuple[ServedModel, int] | None:
        if model.spec.engine_speculation:
            return None  # the engine speculates itself (trtllm-pytorch speculative_config): never twice
        name = self._drafts.get(model.name) or model.spec.draft_model_name
        draft = self.registry.get(name) if name else None
        if draft is None:
            return None
        return draft, model.spec.max_draft_len or self.settings.default_max_draft_len

    def admission(self, model: ServedModel) -> Admission:
        adm = self._admissions.get(model.name)
        if adm is None:
            s = self.settings
            adm = self._admissions[model.name] = Admission(min(s.max_running, model.spec.max_concurrency),
                                                           min(s.max_waiting, model.spec.max_queued),
                                                           s.retry_after_s,
                                                           self.limits.slots(model.name) if self.limits else None)
        return adm

    def controller(self, model: ServedModel) -> AdaptiveSpeculation:
        c = self._controllers.get(model.name)
        if c is None:
            c = self._controllers[model.name] = AdaptiveSpeculation(
                self.settings.speculation, self.limits.window(model.name) if self.limits else None)
        return c

    def _canary_models(self) -> list[tuple[str, int]]:
        out = []
        for m in self.registry.all():
            bos = m.text.tokenizer.token_to_id(m.text.bos_token) if m.text.bos_token else None
            out.append((m.engine_model, bos or 0))
        return out

    def _state_gauges(self):
        if self.limits is not None:  # other API servers may serve a model this one has not served yet
            for m in self.registry.all():
                self.admission(m)
                if self.draft_for(m) is not None:
                    self.controller(m)
        for name, adm in self._admissions.items():
            labels = {"model": name}
            yield "trtpipe_num_requests_running", "Requests admitted and generating", labels, float(adm.num_running)
            yield "trtpipe_num_requests_waiting", "Requests queued for admission", labels, float(adm.num_waiting)
        for name, c in self._controllers.items():
            yield from c.gauges(name)
        ok, _ = self.readiness()
        yield "trtpipe_ready", "1 if /health/ready answers 200", {}, float(ok)

    # --- one request ---------------------------------------------------------------------------------------
    def _events(self, model: ServedModel, gen: Generation, adm: Admission) -> AsyncIterator:
        streams = self._choice_streams(model, gen, adm)
        return streams[0] if len(streams) == 1 else merge(streams)

    def _speculates(self, model: ServedModel, gen: Generation) -> bool:
        # Speculation rounds carry no top alternatives (the verify step's are not the plain path's).
        call = gen.calls[0]
        if call.has_context_dependent_sampling or gen.top_logprobs or (gen.echo and gen.logprobs):
            return False
        # A guided round resumes the grammar with trtpipe's guided_decoding_prefix_len (an engine whose spec says
        # it can), and learns that the grammar is complete from the end-of-sequence id, which ignore_eos takes away.
        draft = self.draft_for(model)
        return call.guide_type is None or (call.end_id is not None and model.spec.resumes_guided_decoding
                                           and draft is not None and draft[0].spec.resumes_guided_decoding)

    def _choice_streams(self, model: ServedModel, gen: Generation, adm: Admission) -> list[AsyncIterator]:
        pin: list = [None]  # all engine calls of this request go to one replica (prefix cache)
        outputs = (OUTPUT_IDS, OUTPUT_KV_REUSED) + ((OUTPUT_LOG_PROBS,) if gen.logprobs else ())
        if gen.top_logprobs:
            outputs += OUTPUT_TOP
        if gen.echo and gen.logprobs:
            outputs += OUTPUT_PROMPT
        pool, engine = self.pool, model.engine_model

        def stream(name, call, outs):
            return pool.generate(name, call, outs, pin)

        draft = self.draft_for(model)
        if draft is not None and self._speculates(model, gen):
            mm = self.metrics.model(model.name)

            def on_round(drafted: int, accepted: int) -> None:
                mm.spec_drafts.inc()
                mm.spec_draft_tokens.inc(drafted)
                mm.spec_accepted_tokens.inc(accepted)

            spec = Speculator(stream, engine, draft[0].engine_model, draft[1], self.controller(model),
                              lambda: adm.num_running, on_round)
            source = spec.generate
        else:
            def source(call):
                return pool.generate(engine, call, outputs, pin)
        choices = [generate_choice(source, model, gen, i) for i in range(gen.num_choices)]
        if gen.tool_plan is None and gen.reasoning_prompt is None:
            return choices
        return [shape_choice(c, i, gen.tool_plan, gen.reasoning_prompt, gen.logprobs) for i, c in enumerate(choices)]

    def respond(self, model: ServedModel, gen: Generation, req, *, chat: bool, arrival: float) -> GenerationResponse:
        adm = self.admission(model)
        units = gen.num_choices
        queued = adm.try_acquire(units)  # 429 now if the queue is full; else admitted, or queued in order
        mm = self.metrics.model(model.name)
        rid, created, fp = completion_id("chatcmpl" if chat else "cmpl"), unix_now(), model.manifest.fingerprint
        speculative = self.draft_for(model) is not None and self._speculates(model, gen)
        logprobs = Logprobs(model.text.token_piece, chat, {}) if gen.logprobs else None
        include_usage = bool(req.stream and req.stream_options and req.stream_options.include_usage)
        state = {"admitted": queued is None, "queued": queued, "finished": False, "first": None, "last": None}

        async def admit() -> None:
            if state["queued"] is not None:
                await adm.wait(state["queued"], units)
                state["queued"], state["admitted"] = None, True
            mm.queue_time.observe(perf_counter() - arrival)

        def release() -> None:
            ended_early = not state["finished"] and (state["admitted"] or state["queued"] is not None)
            if state["admitted"]:
                state["admitted"] = False
                adm.release(units)
            elif state["queued"] is not None:
                adm.abandon(state["queued"], units)
                state["queued"] = None
            if ended_early:  # client gone, deadline, drain or engine error
                mm.success["abort"].inc(units)

        def finished(done: dict[int, ChoiceDone]) -> dict:
            state["finished"] = True
            t = perf_counter()
            completion = sum(d.completion_tokens for d in done.values())
            mm.e2e.observe(t - arrival)
            mm.prompt_tokens.inc(gen.num_prompt_tokens)
            mm.generation_tokens.inc(completion)
            mm.request_prompt_tokens.observe(gen.num_prompt_tokens)
            mm.request_generation_tokens.observe(completion)
            for d in done.values():
                mm.success["stop" if d.finish_reason == "tool_calls" else d.finish_reason].inc()
                if d.prefix_cache is not None:
                    mm.prefix_cache_queries.inc(d.prefix_cache[0])
                    mm.prefix_cache_hits.inc(d.prefix_cache[1])
            if completion > 1 and state["first"] is not None:
                mm.tpot.observe((state["last"] - state["first"]) / (completion - 1))
            return usage_dict(gen.num_prompt_tokens, done, speculative)

        async def stream_body() -> AsyncIterator[bytes]:
            writer = ChunkWriter(chat=chat, request_id=rid, created=created, model=model.name, fingerprint=fp,
                                 include_usage=include_usage, logprobs=logprobs)
            done: dict[int, ChoiceDone] = {}
            try:
                await admit()
                if gen.echo and not gen.logprobs:  # with logprobs, generate_choice sends it with the prompt's
                    for i in range(gen.num_choices):
                        yield writer.text(i, gen.prompt_texts[i // gen.n])
                t_last = None
                ttft, itl = mm.ttft, mm.itl
                async for ev in self._events(model, gen, adm):
                    if type(ev) is ChoiceDone:
                        done[ev.index] = ev
                        yield writer.finish(ev)
                        continue
                    t = perf_counter()
                    if t_last is None:
                        ttft.observe(t - arrival)
                        state["first"] = t
                    else:
                        itl.observe(t - t_last)
                    t_last = state["last"] = t
                    if type(ev) is TextDelta:
                        yield writer.text(ev.index, ev.text, ev.logprobs)
                    else:  # tool-call and reasoning deltas (tool_calls.py)
                        yield _shaped_chunk(writer, ev)
                usage = finished(done)
                yield writer.usage(usage) + DONE if include_usage else DONE
            finally:
                release()

        async def json_body() -> bytes:
            echo = gen.echo and not gen.logprobs  # with logprobs the echo arrives as the choice's first text
            texts = [[gen.prompt_texts[i // gen.n]] if echo else [] for i in range(gen.num_choices)]
            lp_parts: list[list] = [[] for _ in range(gen.num_choices)]
            extras: list[dict] = [{} for _ in range(gen.num_choices)]
            done: dict[int, ChoiceDone] = {}
            try:
                await admit()
                async for ev in self._events(model, gen, adm):
                    if type(ev) is ChoiceDone:
                        done[ev.index] = ev
                    else:
                        if state["first"] is None:
                            state["first"] = perf_counter()
                            mm.ttft.observe(state["first"] - arrival)
                        if type(ev) is TextDelta:
                            texts[ev.index].append(ev.text)
                        else:
                            _collect_shaped(extras[ev.index], ev)
                    if ev.logprobs is not None and logprobs is not None:
                        lp_parts[ev.index].append(logprobs.format(ev.index, ev.logprobs))
                state["last"] = perf_counter()
                usage = finished(done)
            finally:
                release()
            joined = [Logprobs.join(p, chat) for p in lp_parts] if logprobs is not None else None
            return full_response(chat=chat, request_id=rid, created=created, model=model.name, fingerprint=fp,
                                 texts=["".join(t) for t in texts], done=done, logprobs=joined, usage=usage,
                                 extras=extras if chat else None)

        def on_error(err: RequestError) -> None:
            self.metrics.error(model.name, err.type, err.status)

        if not req.stream:
            return GenerationResponse(stream=False, produce=json_body, inflight=self.inflight,
                                      deadline_s=self.settings.request_timeout_s, keepalive_s=None, on_error=on_error,
                                      on_done=release)
        return GenerationResponse(stream=True, produce=stream_body, inflight=self.inflight,
                                  deadline_s=self.settings.request_timeout_s, keepalive_s=self.settings.keepalive_s,
                                  on_error=on_error, on_done=release)


def _shaped_chunk(writer: ChunkWriter, ev) -> bytes:
    if type(ev) is ToolCallDelta:
        return writer.tool_call(ev.index, ev.call_index, ev.call_id, ev.name, ev.arguments, ev.logprobs)
    return writer.delta(ev.index, {"reasoning_content": ev.text}, ev.logprobs)


def _collect_shaped(extra: dict, ev: ToolCallDelta | ReasoningDelta) -> None:
    """The non-streamed message's tool_calls and reasoning_content, built from the same events as the stream."""
    if type(ev) is ReasoningDelta:
        extra["reasoning_content"] = extra.get("reasoning_content", "") + ev.text
        return
    calls = extra.setdefault("tool_calls", [])
    if ev.name is not None:
        calls.append({"id": ev.call_id, "type": "function", "function": {"name": ev.name, "arguments": ""}})
    calls[ev.call_index]["function"]["arguments"] += ev.arguments
