"""One gRPC ModelStreamInfer call per engine request, so cancelling it cancels exactly that request.

The frontend's internal stream is a closed set of events: `TokenDelta` for each engine response that carries
tokens, then `Final` once. Requests are built as tritonclient's own protobuf messages (service_pb2) and sent
over a `grpc.aio` channel with tritonclient's generated stub.
NOTE: we skip tritonclient.grpc.aio's InferResult/InferInput wrappers on the hot path: parsing raw output
bytes ourselves costs about a microsecond per response where `as_numpy` costs tens. `to_triton()` keeps
the tritonclient form for scripts that drive Triton directly (bench/grpc_direct.py).
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from itertools import accumulate
from typing import AsyncIterator

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

# Reconnect quickly after Triton comes back (gRPC's default backoff grows to two minutes).
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1),
    ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # No bandwidth-delay probing pings: the streams are small and many; the pings only cost CPU.
    ("grpc.http2.bdp_probe", 0),
]
_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# NOTE: ModelStreamInfer is a bidirectional stream, but the frontend sends exactly one request per call and then
# half-closes, which on the wire is a unary-stream call. Invoked as one, grpc.aio sends the metadata, the request
# and the half-close in a single batch; as a stream-stream call it sends the request only once the metadata batch
# has completed (a round trip through grpc.aio's poller thread), which cost ~0.3 ms of TTFT at concurrency 1.
MODEL_STREAM_INFER = f"/{_SERVICE.full_name}/{_SERVICE.methods_by_name['ModelStreamInfer'].name}"
OUTPUT_IDS = "output_ids"
OUTPUT_LOG_PROBS = "output_log_probs"
# trtpipe's reference engine only: [len, k] top ids and log-probs per generated token.
OUTPUT_TOP = ("output_top_token_ids", "output_top_log_probs")
OUTPUT_PROMPT = ("prompt_log_probs", "prompt_top_token_ids", "prompt_top_log_probs")
OUTPUT_KV_REUSED = "kv_cache_reused_blocks"
DRAFT_COUNTERS = ("total_draft_tokens", "total_accepted_draft_tokens")


def stream_infer_callable(channel: grpc.aio.Channel):
    """ModelStreamInfer for one request: `callable(request)` -> a call to `read()` responses from, or cancel."""
    return channel.unary_stream(MODEL_STREAM_INFER, request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                response_deserializer=service_pb2.ModelStreamInferResponse.FromString)


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


def _top_pairs(ids: list[int] | None, lps: list[float] | None, n: int) -> list[list[tuple[int, float]]] | None:
    """Flat [n * k] ids and log-probs -> per token, k (id, log-prob) pairs."""
    if not ids or lps is None:
        return None
    k = len(ids) // n
    return [list(zip(ids[j * k:(j + 1) * k], lps[j * k:(j + 1) * k])) for j in range(n)]


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


_UNAVAILABLE_HINTS = ("unknown model", "is not ready", "unavailable", "not found", "being unloaded")


def _error_from_message(message: str) -> EngineError:
    if any(h in message.lower() for h in _UNAVAILABLE_HINTS):
        return EngineUnavailable(message)
    return EngineError(message)


def _error_from_rpc(e: grpc.aio.AioRpcError) -> EngineError:
    code = e.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return EngineUnreachable(f"Triton is unreachable: {e.details()}")
    if code == grpc.StatusCode.NOT_FOUND:
        return EngineUnavailable(f"Triton does not serve the model: {e.details()}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return EngineError("Triton did not answer in time", status=504)
    return EngineError(f"Triton failed the request ({code.name}): {e.details()}")


class TritonEngineClient:
    """One Triton replica. The channel is created lazily inside the running event loop (grpc.aio binds to it)."""

    def __init__(self, url: str):
        self.url = url
        self._channel: grpc.aio.Channel | None = None
        self._stub = None
        self._stream_infer = None
        # Request ids must be unique on the Triton side across every client (the engine refuses a duplicate of a
        # running id): a random prefix per client, then a counter.
        self._id_prefix = uuid.uuid4().hex[:16]
        self._next_id = 0
        self.num_responses = 0  # responses received: proof of life for the health checker

    def _connect(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.url, options=CHANNEL_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._stream_infer = stream_infer_callable(self._channel)

    @property
    def stub(self):
        if self._stub is None:
            self._connect()
        return self._stub

    async def is_ready(self, timeout_s: float = 2.0) -> bool:
        try:
            return (await self.stub.ServerReady(service_pb2.ServerReadyRequest(), timeout=timeout_s)).ready
        except grpc.aio.AioRpcError:
            return False

    async def is_live(self, timeout_s: float = 2.0) -> bool:
        """Reachable and running. (Server *readiness* dips while any model loads, e.g. during a publish.)"""
        try:
            return (await self.stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_s)).live
        except grpc.aio.AioRpcError:
            return False

    async def generate(self, model: str, call: EngineCall, outputs: tuple[str, ...] = (OUTPUT_IDS,)
                       ) -> AsyncIterator[TokenDelta | Final]:
        self._next_id += 1
        request = call.to_request(model, f"{self._id_prefix}-{self._next_id}", outputs)
        if self._stream_infer is None:
            self._connect()
        rpc = self._stream_infer(request)
        num_out = draft = accepted = 0
        reused = None
        try:
            while True:
                try:
                    msg = await rpc.read()
                except grpc.aio.AioRpcError as e:
                    raise _error_from_rpc(e) from None
                if msg is grpc.aio.EOF:
                    raise EngineError("Triton closed the stream before the final response")
                if msg.error_message:
                    raise _error_from_message(msg.error_message)
                self.num_responses += 1
                response = msg.infer_response
                raw = response.raw_output_contents
                ids = lps = top_ids = top_lps = prompt_lps = prompt_ids = prompt_top = None
                for i, out in enumerate(response.outputs):
                    name = out.name
                    if name == OUTPUT_IDS:
                        ids = memoryview(raw[i]).cast("i").tolist()
                    elif name == OUTPUT_LOG_PROBS:
                        lps = memoryview(raw[i]).cast("f").tolist()
                    elif name == OUTPUT_TOP[0]:
                        top_ids = memoryview(raw[i]).cast("i").tolist()
                    elif name == OUTPUT_TOP[1]:
                        top_lps = memoryview(raw[i]).cast("f").tolist()
                    elif name == OUTPUT_PROMPT[0]:
                        prompt_lps = memoryview(raw[i]).cast("f").tolist()
                    elif name == OUTPUT_PROMPT[1]:
                        prompt_ids = memoryview(raw[i]).cast("i").tolist()
                    elif name == OUTPUT_PROMPT[2]:
                        prompt_top = memoryview(raw[i]).cast("f").tolist()
                    elif name == "total_draft_tokens":
                        draft = struct.unpack("<i", raw[i])[0]
                    elif name == "total_accepted_draft_tokens":
                        accepted = struct.unpack("<i", raw[i])[0]
                    elif name == OUTPUT_KV_REUSED:
                        reused = struct.unpack("<i", raw[i])[0]
                if ids:
                    num_out += len(ids)
                    prompt = None if prompt_lps is None else (
                        prompt_lps, _top_pairs(prompt_ids, prompt_top, len(prompt_lps)) if prompt_lps else None)
                    yield TokenDelta(ids, lps, _top_pairs(top_ids, top_lps, len(ids)), prompt)
                if response.parameters["triton_final_response"].bool_param:
                    yield Final(num_out, draft, accepted, reused)
                    return
        finally:
            # A no-op after the final response; on an early exit (client gone, stop string) it cancels the
            # request in Triton, which the engine sees at its next step.
            rpc.cancel()

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = self._stream_infer = None
