"""EngineLoop: the one thread that owns the Engine. Everything else sends it commands.

Triton's execute() only decodes tensors and submits; this loop admits new requests between steps (in-flight
batching), runs engine.step(), streams each request's new tokens through its sender, and checks every
request for cancellation once per step, so a client that goes away stops costing anything within one step.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from trtpipe.engine import Engine, EngineRequest, RequestOutput
from trtpipe.engine.inbox import drain
from trtpipe.python_models.tensors import RequestOptions, encode_output


# Engine.stats() keys published as Triton metrics (`trtpipe_engine_state{state=...}`). The prefix-cache pair are
# running totals in tokens, as vLLM counts `prefix_cache_queries` / `prefix_cache_hits`.
ENGINE_GAUGES = ("num_active_requests", "num_waiting_requests", "kv_blocks_used", "kv_blocks_free",
                 "kv_blocks_total", "kv_blocks_reused_total", "prefix_cache_queries", "prefix_cache_hits")


class ResponseSender(Protocol):
    def send(self, tensors: dict[str, np.ndarray] | None, *, error: str | None = None, final: bool = False) -> None: ...

    def is_cancelled(self) -> bool: ...


@dataclass
class ActiveRequest:
    """One running request as the adapter sees it: what was asked, where responses go, what has gone out."""

    request: EngineRequest
    opts: RequestOptions
    sender: ResponseSender
    token_ids: list[int] = field(default_factory=list)
    log_probs: list[float] = field(default_factory=list)
    top_log_probs: list = field(default_factory=list)  # per token (ids, log-probs), when asked for
    prompt_log_probs: tuple | None = None  # from the engine's first output; sent with the first response
    num_streamed: int = 0  # of token_ids, how many have gone out (streaming)


class EngineLoop:
    def __init__(self, engine: Engine, on_step: Callable[[dict], None] = lambda stats: None,
                 stream_interval: int = 1):
        self.engine = engine
        self.on_step = on_step
        self.stream_interval = stream_interval  # tokens per streamed response after the first (see config.Serving)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._active: dict[str, ActiveRequest] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trtpipe-engine-loop", daemon=True)

    # --- called from Triton's threads -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, request: EngineRequest, opts: RequestOptions, sender: ResponseSender) -> None:
        self._commands.put(("add", ActiveRequest(request, opts, sender)))

    def stop_request(self, request_id: str, sender: ResponseSender) -> None:
        """TensorRT-LLM's `stop` input: end the request with this id, answer with one empty final response.

        The frontend ends every request its client left this way (serve/engine_client/client.py). The answer is a
        response with no tensors, not the bare final flag: in tests/e2e/test_reload_under_load.py on Triton 2.51, a
        version was left UNLOADING in 3 of 5 runs with the bare flag, in 2 of 17 with the empty response (a hint,
        not a proof)."""
        self._commands.put(("stop", request_id, sender))

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._commands.put(("wake",))
        self._thread.join(timeout_s)

    # --- the loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            idle = not self.engine.has_unfinished_requests()
            drain(self._commands, self._apply, block=idle)
            self._cancel_abandoned()
            if not self.engine.has_unfinished_requests():
                self._report_stats()
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # noqa: BLE001 - an engine bug must fail the requests, not hang them
                self._fail_all(f"engine step failed: {type(e).__name__}: {e}")
                continue
            for out in outputs:
                self._deliver(out)
            self._report_stats()
        self._fail_all("the model is being unloaded")

    def _report_stats(self) -> None:
        try:
            self.on_step(self.engine.stats())
        except Exception:  # noqa: BLE001 - metrics must never stop generation
            pass

    def _apply(self, cmd: tuple) -> None:
        if cmd[0] == "add":
            active: ActiveRequest = cmd[1]
            rid = active.request.request_id
            if rid in self._active:
                active.sender.send(None, error=f"request id {rid!r} is already running", final=True)
                return
            try:
                self.engine.add_request(active.request)
            except ValueError as e:
                active.sender.send(None, error=str(e), final=True)
                return
            self._active[rid] = active
        elif cmd[0] == "stop":
            _, rid, sender = cmd
            self._finish_early(rid, "stopped by a `stop` request")
            sender.send({}, final=True)  # an empty response, not the bare flag: see stop_request

    def _cancel_abandoned(self) -> None:
        for rid in [rid for rid, a in self._active.items() if a.sender.is_cancelled()]:
            self._finish_early(rid, "cancelled")

    def _finish_early(self, rid: str, reason: str) -> None:
        active = self._active.pop(rid, None)
        self.engine.abort(rid)
        if active is not None:
            # The client may be gone; the final flag still releases Triton's request.
            active.sender.send(None, error=f"request {reason}", final=True)

    def _deliver(self, out: RequestOutput) -> None:
        active = self._active.get(out.request_id)
        if active is None:
            return
        if out.finished:
            del self._active[out.request_id]
        deliver(active, out, self.stream_interval, out.num_reused_prompt_tokens // self.engine.limits.tokens_per_block)

    def _fail_all(self, message: str) -> None:
        for rid in list(self._active):
            active = self._active.pop(rid)
            self.engine.abort(rid)
            active.sender.send(None, error=message, final=True)


def deliver(active: ActiveRequest, out: RequestOutput, stream_interval: int, reused_blocks: int = 0) -> None:
    """Send one engine output to the request's client, as the tensorrt_llm model does: streaming sends only
    new tokens (the first at once for TTFT, later ones every stream_interval tokens, the rest with the final
    flag); non-streaming sends everything once, at the end. Shared by every Python engine model."""
    active.token_ids.extend(out.new_token_ids)
    if out.new_log_probs:
        active.log_probs.extend(out.new_log_probs)
    if out.new_top_log_probs:
        active.top_log_probs.extend(out.new_top_log_probs)
    if out.prompt_log_probs is not None:
        active.prompt_log_probs = out.prompt_log_probs
    opts = active.opts
    kv = {"reused": reused_blocks}
    if opts.streaming:
        pending = len(active.token_ids) - active.num_streamed
        if out.finished or (pending and (active.num_streamed == 0 or pending >= stream_interval)):
            ids = active.token_ids[active.num_streamed:]
            lp = active.log_probs[active.num_streamed:] if opts.return_log_probs else None
            top = active.top_log_probs[active.num_streamed:]
            active.num_streamed = len(active.token_ids)
            prompt, active.prompt_log_probs = active.prompt_log_probs, None  # sent once, with the first response
            active.sender.send(encode_output(out, ids, lp, kv, top, prompt), final=out.finished)
    elif out.finished:
        ids = active.token_ids if opts.exclude_input_in_output else active.request.prompt_token_ids + active.token_ids
        lp = active.log_probs if opts.return_log_probs else None
        active.sender.send(encode_output(out, ids, lp, kv, active.top_log_probs, active.prompt_log_probs),
                           final=True)
