"""LlmApiLoop: the `<model>-engine` behind Triton for backend trtllm-pytorch, driving `tensorrt_llm.LLM`.

The same shape as EngineLoop (python_models/loop.py) and the same adapter code: Triton's execute() decodes
tensors with python_models/tensors.py and submits; responses go out through python_models/loop.py `deliver`, so
streaming, the final flag, exclude_input_in_output, log-probs and the output tensors are exactly the reference
engine's.
What differs is who schedules: TensorRT-LLM's executor does in-flight batching, so here one asyncio loop in
one thread owns every request's `generate_async` stream, and a watchdog checks each request's
`is_cancelled()` every poll interval and calls `abort()` on the request, so a client that goes away stops
costing GPU time even while its request is still queued.

Guides (guided_decoding_guide_type / guided_decoding_guide) are passed on, not compiled here: they become
`SamplingParams(guided_decoding=GuidedDecodingParams(...))` and TensorRT-LLM enforces them with the LlmArgs
`guided_decoding_backend` the build wrote (xgrammar or llguidance).

Stop sequences (stop_words_list) are matched here, on token ids, and the request is aborted at the match:
the matched sequence is kept and end_id is dropped, as the reference engine does, so the frontend sees one
behaviour on every backend. The engine is given end_id, so it stops on it by itself.

Log-probs: return_log_probs / num_top_log_probs become `SamplingParams(logprobs=max(k, 1))` and
return_prompt_log_probs `prompt_logprobs`; python_models/llm_api_logprobs.py turns CompletionOutput's dicts into
the reference engine's fields, and a token TensorRT-LLM gave no log-prob for fails its request (aborted) instead.

`tensorrt_llm` is passed in (the module, or a test's recorded stand-in); nothing here imports it.
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from typing import Any

from trtpipe.engine import EngineRequest, RequestOutput
from trtpipe.python_models import llm_api_logprobs as lp
from trtpipe.python_models.loop import ActiveRequest, ResponseSender, deliver
from trtpipe.python_models.tensors import RequestOptions

POLL_S = 0.05


def sampling_kwargs(request: EngineRequest) -> dict[str, Any]:
    """EngineRequest -> keyword arguments of tensorrt_llm.SamplingParams (names as its docstring documents)."""
    s = request.sampling
    kwargs: dict[str, Any] = {"max_tokens": request.max_new_tokens, "detokenize": False, "n": 1}
    if s.is_greedy:
        kwargs["top_k"] = 1  # TensorRT-LLM's greedy
    else:
        kwargs.update(temperature=s.temperature, top_p=s.top_p)
        if s.top_k:
            kwargs["top_k"] = s.top_k
    if request.end_id is not None:
        kwargs.update(end_id=request.end_id, pad_id=request.end_id)
    if s.seed is not None:
        kwargs["seed"] = s.seed
    if s.min_tokens:
        kwargs["min_tokens"] = s.min_tokens
    if s.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = s.repetition_penalty
    if s.presence_penalty:
        kwargs["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        kwargs["frequency_penalty"] = s.frequency_penalty
    if request.return_log_probs or request.num_top_log_probs:
        # Per generated token the top `logprobs` tokens ({id: Logprob}); 1 gives the sampled token's under greedy.
        kwargs["logprobs"] = max(request.num_top_log_probs, 1)
    if request.return_prompt_log_probs:
        kwargs["prompt_logprobs"] = max(request.num_top_log_probs, 1)
    return kwargs


# guided_decoding_guide_type -> the GuidedDecodingParams field that carries the guide (tensorrt_llm/sampling_params.py:
# json, regex, grammar, json_object, structural_tag; one per request). `json` is any JSON: json_object=True, no text.
GUIDED_DECODING_FIELDS = {"json": "json_object", "json_schema": "json", "regex": "regex", "ebnf_grammar": "grammar",
                          "structural_tag": "structural_tag"}


def guided_decoding_kwargs(guide: tuple[str, str]) -> dict[str, Any]:
    """(guide type, guide) as decoded from the tensors -> keyword arguments of GuidedDecodingParams."""
    guide_type, text = guide
    field = GUIDED_DECODING_FIELDS[guide_type]
    return {field: True} if field == "json_object" else {field: text}


def guided_decoding_params(tensorrt_llm: Any, guide: tuple[str, str] | None) -> Any:
    """SamplingParams(guided_decoding=...): the engine's own guided decoding (LlmArgs guided_decoding_backend)."""
    if guide is None:
        return None
    # NOTE: not a top-level name of tensorrt_llm; documented as tensorrt_llm.llmapi.GuidedDecodingParams and defined
    # in tensorrt_llm.sampling_params, which is where it is looked up (the submodule, imported on first use).
    module = importlib.import_module(f"{tensorrt_llm.__name__}.sampling_params")
    return module.GuidedDecodingParams(**guided_decoding_kwargs(guide))


def _add_log_probs(out: RequestOutput, request: EngineRequest, completion: Any, seen: int,
                   prompt_pending: bool) -> None:
    """Fill the output's log-prob fields from the CompletionOutput, as the reference engine fills them: this step's
    tokens' own log-probs and top alternatives (CompletionOutput.logprobs grows with token_ids, so the new
    tokens' entries are at the same offsets), and the prompt's once, on the first output that carries them."""
    new = out.new_token_ids
    entries = list(completion.logprobs or [])[seen:seen + len(new)]
    if request.return_log_probs and entries:
        out.new_log_probs = lp.sampled_log_probs(entries, new)
    if request.num_top_log_probs and new:
        if len(entries) < len(new):
            raise lp.LogProbsUnavailable(f"TensorRT-LLM returned log-probs for {len(entries)} of {len(new)} new "
                                         f"tokens; top log-probs were asked for")
        out.new_top_log_probs = lp.top_log_probs(entries, request.num_top_log_probs)
    prompt = getattr(completion, "prompt_logprobs", None)
    if prompt_pending and prompt:
        out.prompt_log_probs = lp.prompt_log_probs(prompt, request.prompt_token_ids, request.num_top_log_probs)


def _stop_at(token_ids: list[int], start: int, stops: list[list[int]]) -> int | None:
    """The end index of the first stop sequence ending at or after `start` (new tokens), or None."""
    for end in range(max(start, 1), len(token_ids) + 1):
        for stop in stops:
            if len(stop) <= end and token_ids[end - len(stop):end] == stop:
                return end
    return None


class LlmApiLoop:
    def __init__(self, llm: Any, tensorrt_llm: Any, stream_interval: int = 1, poll_s: float = POLL_S):
        self.llm, self.trtllm = llm, tensorrt_llm
        self.stream_interval, self.poll_s = stream_interval, poll_s
        self._active: dict[str, tuple[ActiveRequest, Any]] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="trtpipe-llm-api-loop", daemon=True)

    # --- called from Triton's threads -------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._watchdog(), self._loop)

    def submit(self, request: EngineRequest, opts: RequestOptions, sender: ResponseSender) -> None:
        asyncio.run_coroutine_threadsafe(self._serve(ActiveRequest(request, opts, sender)), self._loop)

    def stop_request(self, request_id: str, sender: ResponseSender) -> None:
        """The `stop` input: end the request with this id, answer with one empty final response."""
        def stop() -> None:
            self._finish_early(request_id, "stopped by a `stop` request")
            sender.send({}, final=True)  # an empty response, not the bare flag: see EngineLoop.stop_request

        self._loop.call_soon_threadsafe(stop)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        def fail_all() -> None:
            for rid in list(self._active):
                self._finish_early(rid, "the model is being unloaded")
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            self._loop.call_soon(self._loop.stop)  # after the cancellations above have run

        self._loop.call_soon_threadsafe(fail_all)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self._loop.close()

    # --- on the loop ---------------------------------------------------------------------------------------
    async def _serve(self, active: ActiveRequest) -> None:
        request = active.request
        rid = request.request_id
        if rid in self._active:
            active.sender.send(None, error=f"request id {rid!r} is already running", final=True)
            return
        if request.draft_token_ids is not None:
            # The engine speculates itself (speculative_config); the published spec tells the frontend so.
            active.sender.send(None, error="input 'draft_input_ids' is not accepted: this model speculates inside "
                                           "TensorRT-LLM (its spec.json engine_speculation); send no draft tokens",
                               final=True)
            return
        try:
            guided = guided_decoding_params(self.trtllm, active.opts.guide)
            params = self.trtllm.SamplingParams(**sampling_kwargs(request),
                                                **({"guided_decoding": guided} if guided is not None else {}))
            result = self.llm.generate_async(request.prompt_token_ids, sampling_params=params, streaming=True)
        except Exception as e:  # noqa: BLE001 - a refused request fails alone, with TensorRT-LLM's reason
            active.sender.send(None, error=f"TensorRT-LLM refused the request: {type(e).__name__}: {e}", final=True)
            return
        self._active[rid] = (active, result)
        seen, prompt_pending = 0, request.return_prompt_log_probs
        try:
            async for output in result:
                if rid not in self._active:
                    return  # cancelled, stopped or unloaded: already answered
                completion = output.outputs[0]
                token_ids = list(completion.token_ids)
                finished, reason = bool(output.finished), completion.finish_reason
                end = _stop_at(token_ids, seen, request.stop_token_ids)
                if end is not None:
                    token_ids, finished, reason = token_ids[:end], True, "stop"
                    result.abort()
                elif finished and request.end_id is not None and token_ids and token_ids[-1] == request.end_id:
                    token_ids = token_ids[:-1]
                new = token_ids[seen:]
                out = RequestOutput(rid, new, None, finished, reason, len(request.prompt_token_ids), len(token_ids))
                _add_log_probs(out, request, completion, seen, prompt_pending)
                prompt_pending = prompt_pending and out.prompt_log_probs is None
                seen = len(token_ids)
                if finished:
                    del self._active[rid]
                deliver(active, out, self.stream_interval)
                if finished:
                    return
        except lp.LogProbsUnavailable as e:
            if self._active.pop(rid, None) is not None:
                result.abort()
                active.sender.send(None, error=str(e), final=True)
        except Exception as e:  # noqa: BLE001 - an engine error fails this request, not the loop
            if self._active.pop(rid, None) is not None:
                active.sender.send(None, error=f"TensorRT-LLM failed the request: {type(e).__name__}: {e}",
                                   final=True)

    async def _watchdog(self) -> None:
        while True:
            for rid in [rid for rid, (a, _) in self._active.items() if a.sender.is_cancelled()]:
                self._finish_early(rid, "cancelled")
            await asyncio.sleep(self.poll_s)

    def _finish_early(self, rid: str, reason: str) -> None:
        entry = self._active.pop(rid, None)
        if entry is None:
            return
        active, result = entry
        result.abort()
        # The client may be gone; the final flag still releases Triton's request.
        active.sender.send(None, error=f"request {reason}", final=True)
