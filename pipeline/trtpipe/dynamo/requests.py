"""Dynamo's token request -> the engine's EngineRequest, and engine outputs -> Dynamo's response chunks.

The request is the dict Dynamo's frontend sends a `ModelInput.Tokens` worker (its Rust `PreprocessedRequest`):
`token_ids`, `eos_token_ids`, `stop_conditions` (max_tokens, min_tokens, ignore_eos, stop_token_ids_hidden),
`sampling_options` (temperature, top_p, top_k, seed, penalties, guided_decoding, ...) and `output_options`
(logprobs, prompt_logprobs). Stop *strings* never reach here: the frontend matches them on the text it
detokenizes and stops the stream, which the worker sees as a cancelled context.

A field the engine cannot honour is refused with its name (RequestRefused), never silently ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from trtpipe.engine import EngineRequest, RequestOutput, SamplingParams
from trtpipe.spec import ServingSpec

# Dynamo's guided_decoding keys -> the engine's guide types (engine/grammar.py, TensorRT-LLM's names).
_GUIDES = {"json": "json_schema", "regex": "regex", "grammar": "ebnf_grammar", "choice": "regex"}


class RequestRefused(ValueError):
    """A request this worker will not run; the message names the field, the limit and the value."""


@dataclass
class RequestShape:
    """What the response needs beyond the engine's outputs."""

    hidden_stop_ids: frozenset[int]  # end-of-sequence ids other than end_id: matched as stops, never shown
    num_top_log_probs: int | None  # None: no log-probs asked for
    token_text: Callable[[int], str] = field(default=lambda t: "")


def engine_request(request_id: str, req: dict[str, Any], spec: ServingSpec,
                   compile_guide: Callable[[str, str], Any] | None = None,
                   token_text: Callable[[int], str] = lambda t: "") -> tuple[EngineRequest, RequestShape]:
    prompt = [int(t) for t in req.get("token_ids") or []]
    if not prompt:
        raise RequestRefused("`token_ids` must not be empty")
    stop = req.get("stop_conditions") or {}
    sampling = req.get("sampling_options") or {}
    output = req.get("output_options") or {}

    n = len(prompt)
    if n > spec.max_input_len:
        raise RequestRefused(f"the prompt has {n} tokens; this model takes at most {spec.max_input_len}")
    max_tokens = stop.get("max_tokens")
    if max_tokens is None:  # as trtpipe's own frontend: the configured default, shortened to fit
        max_tokens = max(1, min(spec.default_max_tokens, spec.max_seq_len - n))
    max_tokens = int(max_tokens)
    if not 1 <= max_tokens <= spec.max_max_tokens:
        raise RequestRefused(f"`max_tokens` must be in 1..{spec.max_max_tokens}. Given: {max_tokens}")
    if n + max_tokens > spec.max_seq_len:
        raise RequestRefused(f"this model's maximum context length is {spec.max_seq_len} tokens; the request "
                             f"asks for {n + max_tokens} ({n} in the prompt, {max_tokens} to generate)")

    eos = [] if stop.get("ignore_eos") else [int(t) for t in req.get("eos_token_ids") or []]
    hidden = [int(t) for t in stop.get("stop_token_ids_hidden") or []]
    # The first end-of-sequence id is the engine's end_id (dropped from the output, as TensorRT-LLM does); every
    # other one is a one-token stop sequence, which the engine keeps and RequestShape hides.
    end_id = eos[0] if eos else None
    others = sorted({*eos[1:], *hidden} - {end_id})
    _refuse_unsupported(sampling, output)

    params = SamplingParams(
        temperature=1.0 if sampling.get("temperature") is None else float(sampling["temperature"]),
        top_k=int(sampling.get("top_k") or 0), top_p=1.0 if sampling.get("top_p") is None else float(sampling["top_p"]),
        seed=sampling.get("seed"), min_tokens=int(stop.get("min_tokens") or 0),
        repetition_penalty=float(sampling.get("repetition_penalty") or 1.0),
        presence_penalty=float(sampling.get("presence_penalty") or 0.0),
        frequency_penalty=float(sampling.get("frequency_penalty") or 0.0))
    if params.top_k < 0:  # OpenAI clients send -1 for "off"
        params.top_k = 0
    try:
        params.validate()
    except ValueError as e:
        raise RequestRefused(str(e)) from None

    top_k = output.get("logprobs")
    top_k = None if top_k is None else int(top_k)
    if top_k is not None and not 0 <= top_k <= spec.max_top_log_probs:
        raise RequestRefused(f"`logprobs` must be in 0..{spec.max_top_log_probs}. Given: {top_k}")

    request = EngineRequest(
        request_id=request_id, prompt_token_ids=prompt, max_new_tokens=max_tokens, end_id=end_id,
        sampling=params, stop_token_ids=[[t] for t in others], return_log_probs=top_k is not None,
        num_top_log_probs=top_k or 0, grammar=_grammar(sampling.get("guided_decoding"), compile_guide))
    return request, RequestShape(frozenset(others), top_k, token_text)


def _refuse_unsupported(sampling: dict, output: dict) -> None:
    if (sampling.get("n") or 1) > 1 or (sampling.get("best_of") or 1) > 1:
        raise RequestRefused("`n` and `best_of` must be 1: this worker generates one choice per request")
    if sampling.get("use_beam_search"):
        raise RequestRefused("`use_beam_search` is not supported by the reference engine")
    if sampling.get("min_p"):
        raise RequestRefused(f"`min_p` is not supported by the reference engine. Given: {sampling['min_p']}")
    if output.get("prompt_logprobs"):
        raise RequestRefused("`prompt_logprobs` is not served through Dynamo by this worker")


def _grammar(guided: dict | None, compile_guide: Callable[[str, str], Any] | None):
    guided = {k: v for k, v in (guided or {}).items() if v not in (None, False, "", [])}
    guided.pop("backend", None)
    guided.pop("whitespace_pattern", None)
    if not guided:
        return None
    if compile_guide is None:
        raise RequestRefused("guided decoding is off for this model (its tokenizer cannot be used for it)")
    if guided.pop("json_object", None):
        guided.setdefault("json", {"type": "object"})
    if len(guided) != 1 or next(iter(guided)) not in _GUIDES:
        raise RequestRefused(f"`guided_decoding` must hold exactly one of {sorted(_GUIDES)}. Given: {sorted(guided)}")
    kind, value = next(iter(guided.items()))
    if kind == "json":
        value = value if isinstance(value, str) else json.dumps(value)
    elif kind == "choice":
        value = "|".join(_regex_escape(str(c)) for c in value)
    try:
        return compile_guide(_GUIDES[kind], value).new_state()
    except ValueError as e:  # GrammarError
        raise RequestRefused(str(e)) from None


def _regex_escape(text: str) -> str:
    return "".join("\\" + c if c in r"\.^$|?*+()[]{}/" else c for c in text)


def response_chunk(out: RequestOutput, shape: RequestShape, num_sent: int) -> dict[str, Any]:
    """One engine output -> one Dynamo chunk: this step's tokens; the finish reason and usage on the last."""
    ids = list(out.new_token_ids)
    log_probs = list(out.new_log_probs or [])
    tops = list(out.new_top_log_probs or [])
    if out.finished and out.finish_reason == "stop" and ids and ids[-1] in shape.hidden_stop_ids:
        ids, log_probs, tops = ids[:-1], log_probs[:-1], tops[:-1]  # an end-of-sequence id is never text
    chunk: dict[str, Any] = {"token_ids": ids, "index": 0}
    if shape.num_top_log_probs is not None and ids:
        chunk["log_probs"] = log_probs[:len(ids)]
        chunk["top_logprobs"] = [
            [{"rank": r + 1, "token_id": t, "token": shape.token_text(t), "logprob": lp}
             for r, (t, lp) in enumerate(zip(*top))] for top in tops[:len(ids)]]
    if out.finished:
        chunk["finish_reason"] = out.finish_reason or "stop"
        completion = num_sent + len(ids)
        chunk["completion_usage"] = {
            "prompt_tokens": out.num_prompt_tokens, "completion_tokens": completion,
            "total_tokens": out.num_prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": out.num_reused_prompt_tokens}}
    return chunk
