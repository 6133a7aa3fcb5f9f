"""What the frontend asks of a `<model>-engine` and what comes back: the call, its events, how it can fail.

The frontend's internal stream is a closed set of events: `TokenDelta` for each engine response that carries
tokens, then `Final` once. An `EngineCall` builds its request as tritonclient's own protobuf message
(service_pb2); `to_triton()` keeps the tritonclient InferInput form for scripts that drive Triton directly
(bench/grpc_direct.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np
from tritonclient.grpc import service_pb2

OUTPUT_IDS = "output_ids"
OUTPUT_LOG_PROBS = "output_log_probs"
# trtpipe's reference engine only: [len, k] top ids and log-probs per generated token.
OUTPUT_TOP = ("output_top_token_ids", "output_top_log_probs")
OUTPUT_PROMPT = ("prompt_log_probs", "prompt_top_token_ids", "prompt_top_log_probs")
OUTPUT_KV_REUSED = "kv_cache_reused_blocks"
DRAFT_COUNTERS = ("total_draft_tokens", "total_accepted_draft_tokens")


@dataclass(frozen=True)
class EngineCall:
    """What the frontend asks of a `<model>-engine`: the tensorrt_llm inputs, already validated."""

    input_ids: list[int]
    max_new_tokens: int
    end_id: int | None = None
    stop_token_ids: list[list[int]] = field(default_factory=list)
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    min_tokens: int = 0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    return_log_probs: bool = False
    draft_input_ids: list[int] | None = None
    # Guided decoding, as TensorRT-LLM's tensors: json, json_schema, regex, ebnf_grammar or structural_tag.
    guide_type: str | None = None
    guide: str | None = None
    guide_prefix_len: int = 0  # trtpipe's input (reference engine): the last N input_ids were generated under it
    num_top_log_probs: int = 0  # trtpipe's input, reference engine only
    return_prompt_log_probs: bool = False  # trtpipe's input, reference engine only (echo with logprobs)

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def has_context_dependent_sampling(self) -> bool:
        """Penalties and min_tokens depend on which tokens are 'generated': a speculation round resends the
        generated tokens as prompt, so such requests are not speculated. (A guide's grammar is told where the
        generated tokens start: `guide_prefix_len`.)"""
        return (self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 or self.repetition_penalty != 1.0
                or self.min_tokens > 0)

    def tensors(self) -> list[tuple[str, str, list[int], bytes]]:
        """(name, datatype, shape, raw little-endian bytes); optional inputs only when not the default."""
        out = [
            ("input_ids", "INT32", [1, len(self.input_ids)], struct.pack(f"<{len(self.input_ids)}i", *self.input_ids)),
            ("input_lengths", "INT32", [1, 1], struct.pack("<i", len(self.input_ids))),
            ("request_output_len", "INT32", [1, 1], struct.pack("<i", self.max_new_tokens)),
            ("streaming", "BOOL", [1, 1], b"\x01"),
            ("exclude_input_in_output", "BOOL", [1, 1], b"\x01"),
            ("temperature", "FP32", [1, 1], struct.pack("<f", self.temperature)),
        ]
        optional = (("runtime_top_k", "INT32", "<i", self.top_k, 0), ("runtime_top_p", "FP32", "<f", self.top_p, 1.0),
                    ("min_tokens", "INT32", "<i", self.min_tokens, 0),
                    ("presence_penalty", "FP32", "<f", self.presence_penalty, 0.0),
                    ("frequency_penalty", "FP32", "<f", self.frequency_penalty, 0.0),
                    ("repetition_penalty", "FP32", "<f", self.repetition_penalty, 1.0),
                    ("return_log_probs", "BOOL", "<?", self.return_log_probs, False),
                    ("end_id", "INT32", "<i", self.end_id, None), ("seed", "UINT64", "<Q", self.seed, None),
                    ("num_top_log_probs", "INT32", "<i", self.num_top_log_probs, 0),
                    ("guided_decoding_prefix_len", "INT32", "<i", self.guide_prefix_len, 0),
                    ("return_prompt_log_probs", "BOOL", "<?", self.return_prompt_log_probs, False))
        for name, dtype, fmt, value, default in optional:
            if value != default:
                out.append((name, dtype, [1, 1], struct.pack(fmt, value)))
        if self.stop_token_ids:
            out.append(("stop_words_list", "INT32", *_stop_words_list(self.stop_token_ids)))
        if self.draft_input_ids:
            n = len(self.draft_input_ids)
            out.append(("draft_input_ids", "INT32", [1, n], struct.pack(f"<{n}i", *self.draft_input_ids)))
        if self.guide_type is not None:
            out.append(("guided_decoding_guide_type", "BYTES", [1, 1], _bytes_element(self.guide_type)))
            out.append(("guided_decoding_guide", "BYTES", [1, 1], _bytes_element(self.guide or "")))
        return out

    def to_request(self, model: str, request_id: str, outputs: tuple[str, ...]) -> service_pb2.ModelInferRequest:
        req = service_pb2.ModelInferRequest(model_name=model, id=request_id)
        for name, dtype, shape, raw in self.tensors():
            tensor = req.inputs.add()
            tensor.name, tensor.datatype = name, dtype
            tensor.shape.extend(shape)
            req.raw_input_contents.append(raw)
        for name in outputs:
            req.outputs.add().name = name
        return req

    def to_triton(self) -> list:
        """The same inputs as tritonclient InferInput objects (for scripts using tritonclient directly)."""
        import tritonclient.grpc as grpcclient

        inputs = []
        for name, dtype, shape, raw in self.tensors():
            t = grpcclient.InferInput(name, shape, dtype)
            if dtype == "BYTES":
                t.set_data_from_numpy(np.array([[raw[4:]]], dtype=object))
            else:
                t.set_data_from_numpy(np.frombuffer(raw, dtype=_NP_DTYPES[dtype]).reshape(shape))
            inputs.append(t)
        return inputs


def stop_request(model: str, request_id: str, version: str = "") -> service_pb2.ModelInferRequest:
    """tensorrt_llm's stop request: end the running request with this id (in `version` of the model, the one that
    serves it). The required inputs are there only because the model's config requires them."""
    req = service_pb2.ModelInferRequest(model_name=model, model_version=version, id=request_id)
    for name, dtype, raw in (("input_ids", "INT32", struct.pack("<i", 0)),
                             ("input_lengths", "INT32", struct.pack("<i", 1)),
                             ("request_output_len", "INT32", struct.pack("<i", 1)), ("stop", "BOOL", b"\x01")):
        tensor = req.inputs.add()
        tensor.name, tensor.datatype = name, dtype
        tensor.shape.extend([1, 1])
        req.raw_input_contents.append(raw)
    return req


_NP_DTYPES = {"INT32": np.int32, "FP32": np.float32, "BOOL": np.bool_, "UINT64": np.uint64}


def _bytes_element(text: str) -> bytes:
    """One BYTES (TYPE_STRING) element in Triton's raw form: a little-endian uint32 length, then the bytes."""
    raw = text.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


def _stop_words_list(seqs: list[list[int]]) -> tuple[list[int], bytes]:
    """TensorRT-LLM's [1, 2, L] layout: concatenated ids, then end offsets padded with -1 (shape, raw bytes)."""
    flat = [t for s in seqs for t in s]
    offsets = list(accumulate(len(s) for s in seqs))
    offsets += [-1] * (len(flat) - len(offsets))
    return [1, 2, len(flat)], struct.pack(f"<{2 * len(flat)}i", *flat, *offsets)



class TokenDelta:
    """New tokens of one engine response (streaming: only this step's tokens); `top` per token: the k most
    likely (id, log-prob) pairs, when asked for."""

    __slots__ = ("token_ids", "log_probs", "top", "prompt")

    def __init__(self, token_ids: list[int], log_probs: list[float] | None,
                 top: list[list[tuple[int, float]]] | None = None, prompt: tuple | None = None):
        self.token_ids, self.log_probs, self.top = token_ids, log_probs, top
        self.prompt = prompt  # first response only, when asked: (log-probs of prompt tokens 1.., their top pairs)


@dataclass(frozen=True)
class Final:
    num_output_tokens: int
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0
    num_reused_blocks: int | None = None  # prefix-cache blocks the engine reused (None: it did not say)


class EngineError(Exception):
    """Triton refused or failed the request; `status` is what the client should see."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


class EngineUnavailable(EngineError):
    """The replica does not serve the model right now (not loaded, loading, unloading): another replica may."""

    def __init__(self, message: str):
        super().__init__(message, status=503)


class EngineUnreachable(EngineUnavailable):
    """The replica cannot be reached at all."""


# What a trtpipe Python model puts before its BadRequest message (python_models/triton_io.py): the request's
# inputs were refused, so the client (not the server) has something to change. A wire contract between the two
# sides, stated on both (tests/unit/serve/test_errors.py and tests/integration/test_triton_engine.py check it).
BAD_REQUEST_PREFIX = "bad request: "


class EngineRejected(EngineError):
    """The engine model refused the request's inputs (trtpipe's Python models' BadRequest)."""

    def __init__(self, message: str):
        super().__init__(message, status=400)

