"""tensorrt_llm input tensors -> EngineRequest, RequestOutput -> output tensors (reference facts §3c).

Clients send shape [1, ...] (max_batch_size > 0); the batch dimension is dropped here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trtpipe.engine import EngineRequest, RequestOutput, SamplingParams
from trtpipe.engine.grammar import GUIDE_TYPES, GrammarCompiler, GrammarError, GrammarState
from trtpipe.engine.sampling import MAX_TOP_LOG_PROBS


# Put before a BadRequest's message in the Triton error, so that the frontend knows the request's inputs (not the
# server) are at fault and answers 400 (serve/engine_client/calls.py states the same contract on its side).
BAD_REQUEST_PREFIX = "bad request: "


class BadRequest(ValueError):
    """Names the tensor and what is wrong; returned to the client as a Triton error after BAD_REQUEST_PREFIX."""


@dataclass(frozen=True)
class RequestOptions:
    streaming: bool
    exclude_input_in_output: bool
    return_log_probs: bool
    return_num_input_tokens: bool
    return_num_output_tokens: bool
    # (guided_decoding_guide_type, guided_decoding_guide), when the engine enforces guides itself (TensorRT-LLM) and
    # the adapter only passes them on; None otherwise (the reference engine's grammar is on the EngineRequest).
    guide: tuple[str, str] | None = None


def _scalar(tensors: dict[str, np.ndarray], name: str, default):
    value = tensors.get(name)
    if value is None:
        return default
    flat = np.asarray(value).reshape(-1)
    if flat.size != 1:
        raise BadRequest(f"input '{name}' must hold one value per request, got shape {list(np.shape(value))}")
    return flat[0].item()


def _stop_words(value: np.ndarray | None) -> list[list[int]]:
    """stop_words_list [1, 2, L]: row 0 concatenated token ids, row 1 end offsets padded with -1."""
    if value is None:
        return []
    arr = np.asarray(value).reshape(2, -1)
    ids, offsets = arr[0], [int(o) for o in arr[1] if o >= 0]
    seqs, start = [], 0
    for end in offsets:
        if end > start:
            seqs.append([int(t) for t in ids[start:end]])
        start = end
    return seqs


def _string(tensors: dict[str, np.ndarray], name: str) -> str | None:
    value = tensors.get(name)
    if value is None:
        return None
    flat = np.asarray(value, dtype=object).reshape(-1)
    if flat.size != 1:
        raise BadRequest(f"input '{name}' must hold one string per request, got shape {list(np.shape(value))}")
    item = flat[0]
    try:
        return item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError:
        raise BadRequest(f"input '{name}' must be UTF-8 text") from None


def decode_guide(tensors: dict[str, np.ndarray]) -> tuple[str, str] | None:
    """guided_decoding_guide_type / guided_decoding_guide -> (type, guide text), checked as a pair, not compiled."""
    guide_type = _string(tensors, "guided_decoding_guide_type")
    guide = _string(tensors, "guided_decoding_guide")
    if guide_type is None:
        if guide is not None:
            raise BadRequest("input 'guided_decoding_guide' needs 'guided_decoding_guide_type' beside it")
        return None
    if guide_type not in GUIDE_TYPES:
        raise BadRequest(f"input 'guided_decoding_guide_type' must be one of {', '.join(GUIDE_TYPES)}. "
                         f"Given: {guide_type!r}")
    if guide is None and guide_type != "json":
        raise BadRequest(f"guided_decoding_guide_type '{guide_type}' needs the input 'guided_decoding_guide'")
    return guide_type, guide or ""


def _grammar(tensors: dict[str, np.ndarray], grammars: GrammarCompiler | None) -> GrammarState | None:
    """The guide -> a fresh grammar state for the reference engine (compiled once, cached)."""
    guide = decode_guide(tensors)
    if guide is None:
        return None
    if grammars is None:
        raise BadRequest("guided decoding needs the model's tokenizer (tokenizer/tokenizer.json in the version "
                         "directory), which this engine does not have")
    try:
        return grammars.compile(*guide).new_state()
    except GrammarError as e:
        raise BadRequest(f"input 'guided_decoding_guide': {e}") from None


def _fast_forward(state: GrammarState, prompt: list[int], n: int) -> None:
    """guided_decoding_prefix_len: the grammar first consumes the last n prompt tokens (generated under it)."""
    if not 0 <= n < len(prompt):
        raise BadRequest(f"guided_decoding_prefix_len must be in 0..{len(prompt) - 1}, got {n}")
    for i, token in enumerate(prompt[len(prompt) - n:]):
        if not state.accept(token):
            raise BadRequest(f"guided_decoding_prefix_len: prompt token {len(prompt) - n + i} ({token}) does not "
                             "follow the guide")


def decode_request(request_id: str, tensors: dict[str, np.ndarray], grammars: GrammarCompiler | None = None, *,
                   engine_enforces_guides: bool = False) -> tuple[EngineRequest, RequestOptions]:
    """engine_enforces_guides: the engine behind the adapter compiles and enforces guides itself (TensorRT-LLM's LLM
    API): the guide goes out as RequestOptions.guide instead of being compiled here."""
    if "input_ids" not in tensors or "request_output_len" not in tensors:
        raise BadRequest("inputs 'input_ids' and 'request_output_len' are required")
    input_ids = np.asarray(tensors["input_ids"]).reshape(-1)
    length = _scalar(tensors, "input_lengths", input_ids.size)
    if not 0 < length <= input_ids.size:
        raise BadRequest(f"input_lengths {length} must be in 1..{input_ids.size} (the length of input_ids)")
    draft = tensors.get("draft_input_ids")
    draft_logits = tensors.get("draft_logits")
    temperature = float(_scalar(tensors, "temperature", 1.0))
    top_k = int(_scalar(tensors, "runtime_top_k", 0))
    top_p = float(_scalar(tensors, "runtime_top_p", 1.0))
    # NOTE: as TensorRT-LLM, top_k == 1 is greedy; we also treat temperature 0 as greedy.
    if top_k == 1:
        temperature = 0.0
    seed = tensors.get("seed")
    sampling = SamplingParams(
        temperature=temperature, top_k=top_k, top_p=top_p,
        seed=None if seed is None else int(_scalar(tensors, "seed", 0)),
        min_tokens=int(_scalar(tensors, "min_tokens", 0)),
        repetition_penalty=float(_scalar(tensors, "repetition_penalty", 1.0)),
        presence_penalty=float(_scalar(tensors, "presence_penalty", 0.0)),
        frequency_penalty=float(_scalar(tensors, "frequency_penalty", 0.0)),
    )
    end_id = tensors.get("end_id")
    req = EngineRequest(
        request_id=request_id,
        prompt_token_ids=[int(t) for t in input_ids[:length]],
        max_new_tokens=int(_scalar(tensors, "request_output_len", 0)),
        end_id=None if end_id is None else int(_scalar(tensors, "end_id", -1)),
        sampling=sampling,
        stop_token_ids=_stop_words(tensors.get("stop_words_list")),
        draft_token_ids=None if draft is None else [int(t) for t in np.asarray(draft).reshape(-1)],
        draft_logits=None if draft_logits is None else np.asarray(draft_logits, dtype=np.float32).reshape(
            -1, np.asarray(draft_logits).shape[-1]),
        return_log_probs=bool(_scalar(tensors, "return_log_probs", False)),
        grammar=None if engine_enforces_guides else _grammar(tensors, grammars),
        num_top_log_probs=int(_scalar(tensors, "num_top_log_probs", 0)),
        return_prompt_log_probs=bool(_scalar(tensors, "return_prompt_log_probs", False)),
    )
    if req.max_new_tokens < 1:
        raise BadRequest(f"request_output_len must be >= 1, got {req.max_new_tokens}")
    prefix_len = int(_scalar(tensors, "guided_decoding_prefix_len", 0))
    guide = decode_guide(tensors) if engine_enforces_guides else None
    if prefix_len and engine_enforces_guides:
        # The spec says so (resumes_guided_decoding false), so the frontend never sends it to such an engine.
        raise BadRequest("input 'guided_decoding_prefix_len' is not accepted: this engine cannot resume a grammar "
                         "part-way through an output")
    if prefix_len:
        if req.grammar is None:
            raise BadRequest("guided_decoding_prefix_len needs a guide (guided_decoding_guide_type)")
        _fast_forward(req.grammar, req.prompt_token_ids, prefix_len)
    if not 0 <= req.num_top_log_probs <= MAX_TOP_LOG_PROBS:
        raise BadRequest(f"num_top_log_probs must be in 0..{MAX_TOP_LOG_PROBS}, got {req.num_top_log_probs}")
    opts = RequestOptions(
        streaming=bool(_scalar(tensors, "streaming", False)),
        exclude_input_in_output=bool(_scalar(tensors, "exclude_input_in_output", False)),
        return_log_probs=req.return_log_probs,
        return_num_input_tokens=bool(_scalar(tensors, "return_num_input_tokens", False)),
        return_num_output_tokens=bool(_scalar(tensors, "return_num_output_tokens", False)),
        guide=guide,
    )
    return req, opts


def encode_output(out: RequestOutput, token_ids: list[int], log_probs: list[float] | None,
                  kv_stats: dict[str, int], top: list[tuple[list[int], list[float]]] | None = None,
                  prompt: tuple | None = None) -> dict[str, np.ndarray]:
    """Output tensors with the batch dimension: output_ids [1, beams=1, len]."""
    tensors = {
        "output_ids": np.asarray(token_ids, dtype=np.int32).reshape(1, 1, -1),
        "sequence_length": np.asarray([[len(token_ids)]], dtype=np.int32),
        "num_input_tokens": np.asarray([[out.num_prompt_tokens]], dtype=np.int32),
        "num_output_tokens": np.asarray([[out.num_output_tokens]], dtype=np.int32),
        "total_accepted_draft_tokens": np.asarray([[out.num_accepted_draft_tokens]], dtype=np.int32),
        "total_draft_tokens": np.asarray([[out.num_draft_tokens]], dtype=np.int32),
        "kv_cache_reused_blocks": np.asarray([[kv_stats.get("reused", 0)]], dtype=np.int32),
        "kv_cache_alloc_new_blocks": np.asarray([[kv_stats.get("new", 0)]], dtype=np.int32),
        "kv_cache_alloc_total_blocks": np.asarray([[kv_stats.get("total", 0)]], dtype=np.int32),
    }
    if log_probs is not None:
        lp = np.asarray(log_probs, dtype=np.float32)
        tensors["output_log_probs"] = lp.reshape(1, 1, -1)
        tensors["cum_log_probs"] = np.asarray([[lp.sum()]], dtype=np.float32)
    if top:
        k = len(top[0][0])
        tensors["output_top_token_ids"] = np.asarray([ids for ids, _ in top], dtype=np.int32).reshape(1, -1, k)
        tensors["output_top_log_probs"] = np.asarray([lps for _, lps in top], dtype=np.float32).reshape(1, -1, k)
    if prompt is not None:
        lps, prompt_top = prompt
        tensors["prompt_log_probs"] = np.asarray(lps, dtype=np.float32).reshape(1, -1)
        if prompt_top:
            k = len(prompt_top[0][0])
            tensors["prompt_top_token_ids"] = np.asarray([i for i, _ in prompt_top], np.int32).reshape(1, -1, k)
            tensors["prompt_top_log_probs"] = np.asarray([v for _, v in prompt_top], np.float32).reshape(1, -1, k)
    return tensors
