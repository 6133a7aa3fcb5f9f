"""The frontend's server-wide state: what every request shares, and where each request's lifecycle starts.

`Frontend` owns the registry, the Triton replica pool, the per-model admission bounds and speculation
controllers, the requests in flight, readiness (health checks + canary), the drain, and the stored responses of
/v1/responses. One request's own state lives in its `RequestLifecycle` (lifecycle.py), which `start_request`
creates.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor

from trtpipe.serve import errors
from trtpipe.serve.api.admission import Admission, Inflight
from trtpipe.serve.api.lifecycle import RequestLifecycle, speculates
from trtpipe.serve.api.metrics import FrontendMetrics
from trtpipe.serve.engine_client.replicas import ReplicaPool
from trtpipe.serve.engine_client.speculation import AdaptiveSpeculation
from trtpipe.serve.openai.response_store import ResponseStore
from trtpipe.serve.openai.served_models import ModelRegistry, ServedModel
from trtpipe.serve.openai.validation import Generation, validate_chat, validate_completion

log = logging.getLogger("trtpipe.serve")
# Threads, not processes, prepare requests (chat template, tokenization, guide compilation): tokenizers and
# llguidance are Rust and let go of the GIL while they work (a 4 MB prompt's 2.6 s encode in a thread leaves the
# event loop's 1 ms timer on time), and a process would have to load every tokenizer and send the ids back.
PREPARE_THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))


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
        self._prepare = ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="trtpipe-prepare")
        self._num_preparing = 0
        self.metrics.state.sources += [self._state_gauges, self.pool.gauges]
        # /v1/responses `store: true`: this process's responses, for GET and `previous_response_id`.
        self.responses = ResponseStore(settings.max_stored_responses, settings.max_stored_response_chars)

    # --- start, stop, readiness, drain -------------------------------------------------------------------
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
        self._prepare.shutdown(wait=False, cancel_futures=True)
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
        ended = self.inflight.abort_all(errors.shutting_down(in_flight=True))
        await self.inflight.wait_idle(5.0)
        return ended

    def check_accepting(self) -> None:
        if self.draining:
            raise errors.shutting_down()

    # --- models -------------------------------------------------------------------------------------------
    def served(self, name: str) -> ServedModel:
        model = self.registry.get(name)
        if model is None:
            raise errors.model_not_found(name, self.registry.names())
        return model

    def draft_for(self, model: ServedModel) -> tuple[ServedModel, int] | None:
        if model.spec.engine_speculation:
            return None  # the engine speculates itself (trtllm-pytorch speculative_config): never twice
        name = self._drafts.get(model.name) or model.spec.draft_model_name
        draft = self.registry.get(name) if name else None
        if draft is None:
            return None
        return draft, model.spec.max_draft_len or self.settings.default_max_draft_len

    async def prepare(self, model: ServedModel, req, *, chat: bool) -> Generation:
        return await self.prepare_with(validate_chat if chat else validate_completion, req, model)

    async def prepare_with(self, validate, *args):
        """`validate(*args)` (validate, render and tokenize) off the event loop, in PREPARE_THREADS worker threads.
        Requests being prepared are bounded as the server's requests are: beyond max_running + max_waiting, a 429
        at once."""
        if self._num_preparing >= self.settings.max_running + self.settings.max_waiting:
            raise errors.overloaded(f"{self._num_preparing} requests waiting to be tokenized",
                                    self.settings.retry_after_s)
        self._num_preparing += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._prepare, validate, *args)
        finally:
            self._num_preparing -= 1

    def start_request(self, model: ServedModel, gen: Generation, arrival: float) -> RequestLifecycle:
        """A validated request's lifecycle: admitted now or queued, or a 429 raised here."""
        draft = self.draft_for(model)
        if not speculates(model, gen, draft):
            draft = None
        return RequestLifecycle(model, gen, admission=self.admission(model), pool=self.pool, metrics=self.metrics,
                                arrival=arrival, draft=draft, controller=self.controller(model) if draft else None)

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
