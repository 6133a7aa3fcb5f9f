"""One gRPC ModelStreamInfer call per engine request, so cancelling it cancels exactly that request.

Requests go over a `grpc.aio` channel with tritonclient's generated stub; each response becomes a
`TokenDelta`, the last one also a `Final` (calls.py).
NOTE: we skip tritonclient.grpc.aio's InferResult/InferInput wrappers on the hot path: parsing raw output
bytes ourselves costs about a microsecond per response where `as_numpy` costs tens.
"""

from __future__ import annotations

import asyncio
import struct
import uuid
from typing import AsyncIterator

import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from trtpipe.serve.engine_client.calls import (BAD_REQUEST_PREFIX, DRAFT_COUNTERS, OUTPUT_IDS, OUTPUT_KV_REUSED,
                                               OUTPUT_LOG_PROBS, OUTPUT_PROMPT, OUTPUT_TOP, EngineCall, EngineError,
                                               EngineRejected, EngineUnavailable, EngineUnreachable, Final,
                                               TokenDelta, stop_request)

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


def stream_infer_callable(channel: grpc.aio.Channel):
    """ModelStreamInfer for one request: `callable(request)` -> a call to `read()` responses from, or cancel."""
    return channel.unary_stream(MODEL_STREAM_INFER, request_serializer=service_pb2.ModelInferRequest.SerializeToString,
                                response_deserializer=service_pb2.ModelStreamInferResponse.FromString)


def _top_pairs(ids: list[int] | None, lps: list[float] | None, n: int) -> list[list[tuple[int, float]]] | None:
    """Flat [n * k] ids and log-probs -> per token, k (id, log-prob) pairs."""
    if not ids or lps is None:
        return None
    k = len(ids) // n
    return [list(zip(ids[j * k:(j + 1) * k], lps[j * k:(j + 1) * k])) for j in range(n)]


# A call the caller is done with is wound down off the request's path, never cancelled while Triton may still
# answer it (see TritonEngineClient._wind_down); these bound how long that may take.
STATUS_WAIT_S = 10.0
STOP_WAIT_S = 10.0
_winding_down: set[asyncio.Future] = set()


def _in_background(coro) -> None:
    task = asyncio.ensure_future(coro)
    _winding_down.add(task)  # referenced until done: a dropped call is cancelled when garbage-collected
    task.add_done_callback(_winding_down.discard)


def _retrieved(read: asyncio.Future) -> None:
    """A read's failure after its caller left is no one's to report (asyncio would log it as never retrieved)."""
    if not read.cancelled():
        read.exception()


_UNAVAILABLE_HINTS = ("unknown model", "is not ready", "unavailable", "not found", "being unloaded")


def _error_from_message(message: str) -> EngineError:
    at = message.find(BAD_REQUEST_PREFIX)
    if at >= 0:
        return EngineRejected(message[at + len(BAD_REQUEST_PREFIX):])
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

    async def is_live(self, timeout_s: float = 2.0) -> bool:
        """Reachable and running. (Server *readiness* dips while any model loads, e.g. during a publish.)"""
        try:
            return (await self.stub.ServerLive(service_pb2.ServerLiveRequest(), timeout=timeout_s)).live
        except grpc.aio.AioRpcError:
            return False

    async def generate(self, model: str, call: EngineCall, outputs: tuple[str, ...] = (OUTPUT_IDS,)
                       ) -> AsyncIterator[TokenDelta | Final]:
        self._next_id += 1
        request_id = f"{self._id_prefix}-{self._next_id}"
        request = call.to_request(model, request_id, outputs)
        if self._stream_infer is None:
            self._connect()
        rpc = self._stream_infer(request)
        counts = _ResponseReader()
        ended, version = False, ""  # ended: the engine's last response (final or error) has come
        reading = None
        try:
            while True:
                # Shielded: grpc.aio cancels the call when a read() is cancelled, and the API cancels a request's
                # task when its client disconnects (serve/api/response.py); that cancel is what _wind_down avoids.
                reading = asyncio.ensure_future(rpc.read())
                try:
                    msg = await asyncio.shield(reading)
                except grpc.aio.AioRpcError as e:
                    raise _error_from_rpc(e) from None
                if msg is grpc.aio.EOF:
                    raise EngineError("Triton closed the stream before the final response")
                if msg.error_message:
                    ended = True
                    raise _error_from_message(msg.error_message)
                version = version or msg.infer_response.model_version
                self.num_responses += 1
                delta = counts.read(msg.infer_response)
                if delta is not None:
                    yield delta
                if msg.infer_response.parameters["triton_final_response"].bool_param:
                    ended = True
                    yield Final(counts.num_out, counts.draft, counts.accepted, counts.reused)
                    return
        finally:
            if reading is not None:
                reading.add_done_callback(_retrieved)
            if not rpc.done():
                _in_background(self._wind_down(rpc, ended, model, request_id, version, reading))

    async def _wind_down(self, rpc, ended: bool, model: str, request_id: str, version: str,
                         reading: asyncio.Future | None = None) -> None:
        """End a call the caller is done with as Triton ends any call: its final response, then its status.

        Never by cancelling it while Triton may still answer: on Triton 2.51 (the nvidia-pytriton wheel) that races
        the gRPC stream handler. Cancelled between the final response and the status, the stream's state (which
        holds the inference request, and with it the model version) can be lost: that version, once a publish or
        rollback unloads it, stays UNLOADING for good with its Python backend stub alive. Cancelled mid-stream
        while versions were being swapped, tritonserver aborted (a gRPC `prior > 0` assertion, a SIGSEGV) in 2 of
        9 runs of bench/reload_under_load.py. Triton fixed races there after 2.51 (server#7840, #8078).
        A request the caller left early (client gone, stop string, deadline) is ended by a `stop` request instead
        (tensorrt_llm's input: same id, same version), which the engine answers at its next step, as it would
        a cancellation. Only a call still open after the bound is cancelled.
        A client's disconnect cancels its request's task: generate() shields its read from that, as grpc.aio would
        otherwise cancel the call in read() before this ran (all of tritonserver's SIGSEGVs in
        tests/e2e/test_reload_under_load.py were in ModelStreamInferHandler::Process, the race of server#8078)."""
        async def finish() -> None:
            last = ended
            if reading is not None and not reading.done():
                # The read its caller left when cancelled (shielded): first its answer, as a call reads one at a time.
                msg = await reading
                if msg is grpc.aio.EOF:
                    return
                last = bool(msg.error_message) or msg.infer_response.parameters["triton_final_response"].bool_param
            if not last:
                async for _ in self._stream_infer(stop_request(model, request_id, version)):
                    pass
            while await rpc.read() is not grpc.aio.EOF:
                pass  # the rest of a stopped request: its final (error) response

        try:
            await asyncio.wait_for(finish(), STATUS_WAIT_S if ended else STOP_WAIT_S)  # not asyncio.timeout(): 3.10
        except (asyncio.TimeoutError, grpc.aio.AioRpcError):
            pass  # past the bound, or Triton gone: the call is cancelled below if it is still open
        finally:
            if not rpc.done():
                rpc.cancel()

    async def close(self) -> None:
        if _winding_down:
            # Closing the channel cancels its calls: let the ones winding down end first (see _wind_down).
            await asyncio.wait(list(_winding_down), timeout=max(STATUS_WAIT_S, STOP_WAIT_S))
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = self._stream_infer = None


class _ResponseReader:
    """One stream's responses -> TokenDeltas, keeping the running counts its Final reports."""

    __slots__ = ("num_out", "draft", "accepted", "reused")

    def __init__(self) -> None:
        self.num_out = self.draft = self.accepted = 0
        self.reused: int | None = None

    def read(self, response) -> TokenDelta | None:
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
            elif name == DRAFT_COUNTERS[0]:
                self.draft = struct.unpack("<i", raw[i])[0]
            elif name == DRAFT_COUNTERS[1]:
                self.accepted = struct.unpack("<i", raw[i])[0]
            elif name == OUTPUT_KV_REUSED:
                self.reused = struct.unpack("<i", raw[i])[0]
        if not ids:
            return None
        self.num_out += len(ids)
        prompt = None if prompt_lps is None else (
            prompt_lps, _top_pairs(prompt_ids, prompt_top, len(prompt_lps)) if prompt_lps else None)
        return TokenDelta(ids, lps, _top_pairs(top_ids, top_lps, len(ids)), prompt)
