"""TTFT at concurrency 1, frontend vs direct gRPC, one request of each side after the other.

A sweep point compares two runs of many requests; on a shared machine drift between them is as large as the
difference being measured. Here every iteration sends one request per client kind, in a shuffled order, so
drift falls on all kinds alike, and the medians are compared.

Two pairs of clients, because the clients do not cost the same:
- `httpx` (the bench's HTTP client, trtpipe.bench.client) vs `tritonclient` (tritonclient.grpc.aio's
  stream_infer with InferResult.as_numpy, bench/grpc_direct.py): what `trtpipe bench` users see.
- `lean-http` vs `lean-grpc`: a minimal HTTP/1.1 client (asyncio streams, one write per request, a
  kept-alive connection) vs a bare grpc.aio call with tritonclient's protobuf messages, made exactly as the
  frontend makes it: what the frontend itself adds, with as little client cost as either protocol allows.
- `lean-http` vs `tritonclient`: the issue's comparison, against direct tritonclient gRPC, without charging
  httpx's own cost to the frontend.
TTFT is the time from just before the request is sent to the arrival of the first response carrying
tokens (first SSE event with text; first gRPC response with output ids).
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from dataclasses import dataclass, field
from time import perf_counter
from urllib.parse import urlsplit

KINDS = ("httpx", "tritonclient", "lean-http", "lean-grpc")
# The third pair is the issue's own comparison: the frontend (reached with the least client cost HTTP allows)
# against direct tritonclient gRPC.
PAIRS = (("httpx", "tritonclient"), ("lean-http", "lean-grpc"), ("lean-http", "tritonclient"))


class LeanHttp:
    """One kept-alive HTTP/1.1 connection: POST a JSON body, read a chunked SSE response to its end."""

    def __init__(self, base_url: str):
        parts = urlsplit(base_url)
        self.host, self.port, self.prefix = parts.hostname, parts.port or 80, parts.path.rstrip("/")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def stream_ttft(self, path: str, body: dict) -> float:
        """Seconds from the request's write to the first SSE data line with text (reads the whole response)."""
        await self._connect()
        data = json.dumps(body).encode()
        head = (f"POST {self.prefix}{path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                f"content-type: application/json\r\ncontent-length: {len(data)}\r\n\r\n").encode()
        reader = self._reader
        t0 = perf_counter()
        self._writer.write(head + data)
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"the frontend answered {status.decode(errors='replace').strip()}")
        headers = (await reader.readuntil(b"\r\n\r\n")).lower()
        if b"transfer-encoding: chunked" not in headers:
            raise RuntimeError("expected a chunked SSE response")
        ttft = None
        while True:
            size = int((await reader.readline()).strip(), 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            if ttft is None and _has_text(chunk):
                ttft = perf_counter() - t0
        if ttft is None:
            raise RuntimeError("the response carried no text")
        return ttft

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _has_text(chunk: bytes) -> bool:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {"):
            choice = json.loads(line[6:])["choices"]
            if choice and (choice[0].get("text") or (choice[0].get("delta") or {}).get("content")):
                return True
    return False


async def lean_grpc_ttft(stream_infer, model: str, call) -> float:
    """Seconds from the call's start to the first response with output ids. `stream_infer`: ModelStreamInfer
    invoked as the frontend invokes it (trtpipe.serve.engine_client.stream_infer_callable), no wrappers."""
    request = call.to_request(model, uuid.uuid4().hex, ("output_ids",))
    t0 = perf_counter()
    rpc = stream_infer(request)
    ttft = None
    try:
        async for msg in rpc:
            if msg.error_message:
                raise RuntimeError(msg.error_message)
            response = msg.infer_response
            if ttft is None and any(len(raw) for raw in response.raw_output_contents):
                ttft = perf_counter() - t0
            if response.parameters["triton_final_response"].bool_param:
                break
    finally:
        rpc.cancel()
    if ttft is None:
        raise RuntimeError("the stream carried no tokens")
    return ttft


@dataclass
class PairedTtft:
    """TTFT samples (seconds) per client kind, from interleaved iterations."""

    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})

    def p50_ms(self, kind: str) -> float | None:
        values = sorted(self.samples[kind])
        if not values:
            return None
        mid = len(values) // 2
        return 1e3 * (values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2)

    def added_ms(self, frontend: str, direct: str) -> float | None:
        f, d = self.p50_ms(frontend), self.p50_ms(direct)
        return None if f is None or d is None else f - d

    def paired_added_ms(self, frontend: str, direct: str) -> float | None:
        """Median over iterations of (frontend - direct) within the iteration: the two requests of a difference
        ran within a fraction of a second of each other, so slow drift of the machine cancels out."""
        diffs = sorted(f - d for f, d in zip(self.samples[frontend], self.samples[direct]))
        if not diffs:
            return None
        mid = len(diffs) // 2
        return 1e3 * (diffs[mid] if len(diffs) % 2 else (diffs[mid - 1] + diffs[mid]) / 2)

    def to_json(self) -> dict:
        return {"p50_ms": {k: self.p50_ms(k) for k in KINDS},
                "added_p50_ms": {f"{f} - {d}": self.added_ms(f, d) for f, d in PAIRS},
                "added_paired_median_ms": {f"{f} - {d}": self.paired_added_ms(f, d) for f, d in PAIRS},
                "num_samples": {k: len(v) for k, v in self.samples.items()}}


async def paired_ttft(senders: dict, iterations: int, seed: int = 0) -> PairedTtft:
    """`senders`: kind -> async callable(iteration) returning a TTFT in seconds. Each iteration runs every kind
    once, in a shuffled order."""
    rng = random.Random(seed)
    result = PairedTtft()
    kinds = list(senders)
    for i in range(iterations):
        rng.shuffle(kinds)
        for kind in kinds:
            result.samples[kind].append(await senders[kind](i))
    return result
