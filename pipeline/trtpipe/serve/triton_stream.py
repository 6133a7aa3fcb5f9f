"""One tritonclient.grpc.aio stream per generation request, so cancelling it cancels exactly that request.

The frontend's internal stream is a closed set of events: `TokenDelta` for each engine response and
`Final` once, both carrying the engine's counters.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import AsyncIterator

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException


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

    def to_triton(self) -> list[grpcclient.InferInput]:
        def tensor(name: str, array: np.ndarray) -> grpcclient.InferInput:
            t = grpcclient.InferInput(name, list(array.shape), _TRITON_DTYPES[array.dtype.type])
            t.set_data_from_numpy(array)
            return t

        def scalar(name: str, value, dtype) -> grpcclient.InferInput:
            return tensor(name, np.array([[value]], dtype=dtype))

        inputs = [
            tensor("input_ids", np.array([self.input_ids], dtype=np.int32)),
            scalar("input_lengths", len(self.input_ids), np.int32),
            scalar("request_output_len", self.max_new_tokens, np.int32),
            scalar("streaming", True, np.bool_),
            scalar("exclude_input_in_output", True, np.bool_),
            scalar("temperature", self.temperature, np.float32),
            scalar("runtime_top_k", self.top_k, np.int32),
            scalar("runtime_top_p", self.top_p, np.float32),
            scalar("min_tokens", self.min_tokens, np.int32),
            scalar("presence_penalty", self.presence_penalty, np.float32),
            scalar("frequency_penalty", self.frequency_penalty, np.float32),
            scalar("repetition_penalty", self.repetition_penalty, np.float32),
            scalar("return_log_probs", self.return_log_probs, np.bool_),
        ]
        if self.end_id is not None:
            inputs.append(scalar("end_id", self.end_id, np.int32))
        if self.seed is not None:
            inputs.append(scalar("seed", self.seed, np.uint64))
        if self.stop_token_ids:
            inputs.append(tensor("stop_words_list", _stop_words_list(self.stop_token_ids)))
        if self.draft_input_ids:
            inputs.append(tensor("draft_input_ids", np.array([self.draft_input_ids], dtype=np.int32)))
        return inputs


_TRITON_DTYPES = {np.int32: "INT32", np.float32: "FP32", np.bool_: "BOOL", np.uint64: "UINT64"}


def _stop_words_list(seqs: list[list[int]]) -> np.ndarray:
    """TensorRT-LLM's [1, 2, L] layout: concatenated ids, then end offsets padded with -1."""
    flat = [t for s in seqs for t in s]
    offsets = list(np.cumsum([len(s) for s in seqs]))
    offsets += [-1] * (len(flat) - len(offsets))
    return np.array([[flat, offsets]], dtype=np.int32)


@dataclass(frozen=True)
class TokenDelta:
    token_ids: list[int]
    log_probs: list[float] | None
    num_output_tokens: int


@dataclass(frozen=True)
class Final:
    num_input_tokens: int
    num_output_tokens: int
    num_draft_tokens: int
    num_accepted_draft_tokens: int


class EngineError(Exception):
    """Triton refused or failed the request; `status` is what the client should see."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


class TritonEngineClient:
    def __init__(self, url: str):
        self.url = url
        self.client = grpcclient.InferenceServerClient(url)

    async def is_ready(self, model: str | None = None) -> bool:
        try:
            if model:
                return await self.client.is_model_ready(model)
            return await self.client.is_server_ready()
        except InferenceServerException:
            return False

    async def generate(self, model: str, call: EngineCall) -> AsyncIterator[TokenDelta | Final]:
        request_id = uuid.uuid4().hex

        async def one_request():
            yield {"model_name": model, "inputs": call.to_triton(), "request_id": request_id}

        stream = self.client.stream_infer(one_request())
        num_out = 0
        try:
            async for result, error in stream:
                if error is not None:
                    raise EngineError(str(error), status=_status_for(error))
                response = result.get_response()
                ids = result.as_numpy("output_ids")
                if ids is not None and ids.size:
                    new = ids.reshape(-1).tolist()
                    num_out += len(new)
                    lp = result.as_numpy("output_log_probs")
                    yield TokenDelta(new, None if lp is None else lp.reshape(-1).tolist(), num_out)
                if response.parameters["triton_final_response"].bool_param:
                    yield Final(_scalar(result, "num_input_tokens", len(call.input_ids)),
                                num_out,
                                _scalar(result, "total_draft_tokens", 0),
                                _scalar(result, "total_accepted_draft_tokens", 0))
                    return
        finally:
            # A no-op after the final response; on an early exit (client gone) it cancels the request.
            stream.cancel()

    async def close(self) -> None:
        await self.client.close()


def _scalar(result, name: str, default: int) -> int:
    value = result.as_numpy(name) if result is not None else None
    return default if value is None or value.size == 0 else int(value.reshape(-1)[0])


def _status_for(error: InferenceServerException) -> int:
    status = (error.status() or "").upper()
    if "UNAVAILABLE" in status or "NOT_FOUND" in status:
        return 503
    if "INVALID_ARG" in status:
        return 400
    return 500
