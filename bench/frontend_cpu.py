"""Frontend CPU per streamed token: what the OpenAI frontend itself costs, excluding the engine and the client.

Starts one real Triton on tiny-llama and the frontend in its own process (uvicorn, exactly as `trtpipe serve`
builds it), streams N completions (ignore_eos, so every request yields exactly --max-tokens tokens) at a
given concurrency from this process, and reads the frontend process's CPU time (user + system, from
/proc/<pid>/stat) before and after. The frontend's idle CPU (health checks) over the same wall time is
measured first and subtracted.

It then runs the same load against a second frontend process whose Triton replicas are replaced by a fake
engine (tokens paced by the event loop, no gRPC): `frontend_own_us_per_token` is what the frontend's own
work costs (HTTP, admission, detokenization, chunk formatting, metrics) without grpcio's per-message receive,
which on a small machine is of the same order as the whole budget (one gRPC message per streamed token).

Last, `grpc_floor`: the same load from a bare grpc.aio client (tritonclient's protobuf messages, ModelStreamInfer
called as the frontend calls it, no HTTP, no frontend) in a process of its own: the CPU that receiving one
gRPC message per token costs any Python client, before the frontend does anything
(`grpc_floor_classic_transport`: the same with grpcio's classic client transport,
GRPC_EXPERIMENTS=-event_engine_client).

Two more floors, over Triton's HTTP generate_stream endpoint (SSE, one HTTP/1.1 connection per request, which
Triton 2.51 cancels when the connection closes): `http_floor`, a bare asyncio socket client in Python (no HTTP
library, chunked SSE parsed by hand, json.loads per event), and `curl_floor`, curl (compiled C) processes each
streaming --requests/--concurrency requests, whose CPU less that of the same processes doing as many empty
requests is the cost of receiving one message per token with no Python at all.

    .venv/bin/python -m bench.frontend_cpu                       # 64 requests x 128 tokens at concurrency 16
    .venv/bin/python -m bench.frontend_cpu --requests 128 --concurrency 64 --max-tokens 64 --repo REPO
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.machine_load import process_cpu_s

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_frontend(repo: str, grpc_url: str, port: int) -> None:
    import uvicorn

    from trtpipe.serve.api.app import FrontendSettings, create_app

    app = create_app(FrontendSettings(repo=Path(repo), triton_grpc_url=grpc_url))
    profile = os.environ.get("TRTPIPE_PROFILE")  # a path: write cProfile stats of the frontend there
    if not profile:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
        return
    import cProfile

    signal.signal(signal.SIGTERM, lambda *_: None)  # uvicorn re-raises the signal after its shutdown
    with cProfile.Profile(time.thread_time) as prof:
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    prof.dump_stats(profile)


def serve_fake_frontend(repo: str, port: int) -> None:
    """The same frontend, its replica pool replaced by a fake engine: one token per step of the event loop."""
    import uvicorn

    from trtpipe.serve.engine_client import replicas
    from trtpipe.serve.api.app import FrontendSettings, create_app
    from trtpipe.serve.engine_client import Final, TokenDelta

    async def generate(self, model, call, outputs, pin=None):
        for i in range(call.max_new_tokens):
            await asyncio.sleep(0.001)
            yield TokenDelta([300 + i % 200], None)
        yield Final(call.max_new_tokens)

    async def healthy(self, *args, **kwargs):
        for r in self.replicas:
            r.reachable = r.healthy = True

    replicas.ReplicaPool.generate, replicas.ReplicaPool.check = generate, healthy
    app = create_app(FrontendSettings(repo=Path(repo), triton_grpc_url="127.0.0.1:9"))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def grpc_floor(grpc_url: str, requests: int, concurrency: int, max_tokens: int, repeat: int) -> None:
    """The child process: the same load straight to Triton over a bare grpc.aio stub (tritonclient's generated
    service_pb2_grpc, the transport settings of trtpipe.serve.engine_client), no HTTP, no frontend. Prints its own
    CPU per received token as JSON: what one gRPC message per token costs a Python client before any of the
    frontend's work."""
    import grpc

    from trtpipe.serve.engine_client import EngineCall, stream_infer_callable

    async def load(n: int, m: int) -> int:
        channel = grpc.aio.insecure_channel(grpc_url)
        stream_infer = stream_infer_callable(channel)  # as the frontend calls ModelStreamInfer
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            call = EngineCall(input_ids=[10 + (i * 7 + k) % 500 for k in range(16)], max_new_tokens=m,
                              temperature=0.0, min_tokens=m)
            tokens = 0
            async with sem:
                rpc = stream_infer(call.to_request("tiny-llama-engine", f"floor-{time.time_ns()}-{i}", ("output_ids",)))
                async for msg in rpc:
                    if msg.error_message:
                        raise SystemExit(f"Triton failed a request: {msg.error_message}")
                    tokens += len(msg.infer_response.raw_output_contents[0]) // 4 if \
                        msg.infer_response.raw_output_contents else 0
                    if msg.infer_response.parameters["triton_final_response"].bool_param:
                        break
            return tokens

        try:
            return sum(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            await channel.close()

    print_cpu_per_token(lambda n, m: asyncio.run(load(n, m)), requests, max_tokens, repeat)


def generate_body(i: int, max_tokens: int) -> bytes:
    """A generate_stream request: the same inputs as the frontend's (16 prompt tokens, exactly max_tokens out)."""
    ids = [10 + (i * 7 + k) % 500 for k in range(16)]
    return json.dumps({"input_ids": ids, "input_lengths": [16], "request_output_len": [max_tokens],
                       "min_tokens": [max_tokens], "streaming": [True], "exclude_input_in_output": [True],
                       "temperature": [0.0]}).encode()


def http_floor(http_url: str, requests: int, concurrency: int, max_tokens: int, repeat: int) -> None:
    """The child process: the load over Triton's generate_stream with a bare asyncio Protocol per request."""
    host, port = http_url.removeprefix("http://").split(":")
    path = b"/v2/models/tiny-llama-engine/generate_stream"

    class SseStream(asyncio.Protocol):
        def __init__(self, body: bytes):
            self.body, self.buf, self.in_body = body, b"", False
            self.events: asyncio.Queue = asyncio.Queue()

        def connection_made(self, transport):
            transport.write(b"POST %s HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                            b"content-length: %d\r\n\r\n%s" % (path, host.encode(), len(self.body), self.body))

        def data_received(self, data: bytes):
            buf = self.buf + data
            if not self.in_body:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    self.buf = buf
                    return
                if not buf.startswith(b"HTTP/1.1 200"):
                    self.events.put_nowait(RuntimeError(f"Triton answered {buf[:end + 200]!r}"))
                    return
                self.in_body, buf = True, buf[end + 4:]
            pos = 0
            while (eol := buf.find(b"\r\n", pos)) >= 0:  # chunked encoding: size line, data, CRLF
                size = int(buf[pos:eol], 16)
                if size == 0:
                    self.events.put_nowait(None)
                    break
                if len(buf) < eol + 4 + size:
                    break
                self.events.put_nowait(buf[eol + 2:eol + 2 + size])
                pos = eol + 4 + size
            self.buf = buf[pos:]

        def connection_lost(self, exc):
            self.events.put_nowait(None)

    async def load(n: int, m: int) -> int:
        loop, sem = asyncio.get_running_loop(), asyncio.Semaphore(concurrency)

        async def one(i: int) -> int:
            async with sem:
                transport, stream = await loop.create_connection(lambda: SseStream(generate_body(i, m)), host, port)
                tokens = 0
                while (event := await stream.events.get()) is not None:
                    if isinstance(event, Exception):
                        raise SystemExit(f"generate_stream failed: {event}")
                    ids = json.loads(event[6:])["output_ids"]  # b"data: {...}\n\n"
                    tokens += len(ids) if isinstance(ids, list) else 1
                transport.close()
                return tokens

        return sum(await asyncio.gather(*(one(i) for i in range(n))))

    print_cpu_per_token(lambda n, m: asyncio.run(load(n, m)), requests, max_tokens, repeat)


def print_cpu_per_token(load, requests: int, max_tokens: int, repeat: int) -> None:
    load(min(8, requests), 16)
    runs = []
    for _ in range(repeat):
        c0 = time.process_time()
        tokens = load(requests, max_tokens)
        if tokens != requests * max_tokens:
            raise SystemExit(f"expected {requests * max_tokens} tokens, received {tokens}")
        runs.append(1e6 * (time.process_time() - c0) / max(tokens, 1))
    print(json.dumps({"us_per_token": round(statistics.median(runs), 1),
                      "us_per_token_runs": [round(r, 1) for r in runs]}))


def measure_http_floor(http_url: str, args) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.frontend_cpu", "--http-floor", http_url, str(args.requests),
                          str(args.concurrency), str(args.max_tokens), str(args.repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_curl_floor(http_url: str, args) -> dict | None:
    """curl processes, each sending requests/concurrency requests on one kept-alive connection; their CPU (from
    getrusage of children) less that of the same processes sending as many empty requests."""
    curl = shutil.which("curl")
    if curl is None:
        return None
    per_process = max(1, args.requests // args.concurrency)
    url = f"{http_url}/v2/models/tiny-llama-engine/generate_stream"

    def children_cpu(argvs: list[list[str]]) -> float:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL) for a in argvs]
        if any(p.wait() != 0 for p in procs):
            raise SystemExit("curl failed against Triton's generate_stream")
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)

    runs = []
    for _ in range(args.repeat):
        streams = [[curl, "-sSfN", "-d", generate_body(i, args.max_tokens).decode(), *[url] * per_process]
                   for i in range(args.concurrency)]
        empty = [[curl, "-sSf", *[f"{http_url}/v2/health/ready"] * per_process] for _ in range(args.concurrency)]
        cpu = children_cpu(streams) - children_cpu(empty)
        runs.append(1e6 * cpu / (args.concurrency * per_process * args.max_tokens))
    return {"us_per_token": round(statistics.median(runs), 1), "us_per_token_runs": [round(r, 1) for r in runs]}


def measure_grpc_floor(grpc_url: str, args, grpc_experiments: str | None) -> dict:
    """`grpc_experiments`: None keeps this environment's grpcio settings (the frontend's); a string replaces them."""
    env = dict(os.environ)
    if grpc_experiments is not None:
        env["GRPC_EXPERIMENTS"] = grpc_experiments
    out = subprocess.run([sys.executable, "-m", "bench.frontend_cpu", "--grpc-floor", grpc_url, str(args.requests),
                          str(args.concurrency), str(args.max_tokens), str(args.repeat)],
                         env=env, capture_output=True, text=True, check=True)
    return {"GRPC_EXPERIMENTS": env.get("GRPC_EXPERIMENTS", ""), **json.loads(out.stdout.strip().splitlines()[-1])}


def stop_frontend(frontend: subprocess.Popen) -> None:
    """SIGTERM (the frontend drains as `trtpipe serve` does), then SIGKILL if it has not exited within 30 s."""
    frontend.send_signal(signal.SIGTERM)
    try:
        frontend.wait(30)
    except subprocess.TimeoutExpired:
        frontend.kill()


def start_frontend(argv: list[str], url: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "bench.frontend_cpu", *argv])
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise SystemExit("the frontend did not become ready")
        time.sleep(0.2)


def measure(process: subprocess.Popen, url: str, args) -> dict:
    """Warm up, measure idle CPU, then --repeat runs of the load: CPU per streamed token of `process`."""
    asyncio.run(run_load(url, min(8, args.requests), min(8, args.concurrency), 16))
    idle0, t0 = process_cpu_s(process.pid), time.monotonic()
    time.sleep(2.0)
    idle_rate = (process_cpu_s(process.pid) - idle0) / (time.monotonic() - t0)
    runs = []
    for _ in range(args.repeat):
        c0, t0 = process_cpu_s(process.pid), time.monotonic()
        tokens = asyncio.run(run_load(url, args.requests, args.concurrency, args.max_tokens))
        cpu, wall = process_cpu_s(process.pid) - c0, time.monotonic() - t0
        runs.append({"tokens": tokens, "tokens_per_s": tokens / wall,
                     "us_per_token": 1e6 * (cpu - idle_rate * wall) / max(tokens, 1)})
    return {"idle_cpu_per_s": round(idle_rate, 4),
            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in runs), 1),
            "us_per_token": round(statistics.median(r["us_per_token"] for r in runs), 1),
            "us_per_token_runs": [round(r["us_per_token"], 1) for r in runs]}


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> int:
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise SystemExit(f"the frontend answered {r.status_code}: {(await r.aread()).decode()[:500]}")
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                usage = json.loads(line[6:]).get("usage")
                if usage:
                    tokens = usage["completion_tokens"]
    return tokens


async def run_load(url: str, n: int, concurrency: int, max_tokens: int) -> int:
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        async def bounded(i: int) -> int:
            async with sem:
                return await one_request(client, url, f"Request {i}: tell me about robots number {i}.", max_tokens)
        return sum(await asyncio.gather(*(bounded(i) for i in range(n))))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repo", type=Path, help="a repository with tiny-llama published (default: build one)")
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeat", type=int, default=3, help="measurements of each kind (the median is reported)")
    ap.add_argument("--stream-interval", type=int, default=1,
                    help="build tiny-llama with serving.stream_interval=N (tokens per engine response after the first)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "frontend-cpu.json",
                    help="where the JSON goes (also printed)")
    args = ap.parse_args()

    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    home = Path(tempfile.mkdtemp(prefix="trtpipe-cpu-"))
    os.environ.setdefault("TRTPIPE_HOME", str(home))
    repo = args.repo
    if repo is None:
        from trtpipe.build import build
        from trtpipe.config import load_config

        repo = home / "model_repository"
        build(load_config("tiny-llama", [f"serving.stream_interval={args.stream_interval}"]), repo)
    triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_path=home / "triton.log",
                          exit_timeout_s=2)
    triton.start()
    result = {"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
              "repeats": args.repeat, "stream_interval": args.stream_interval if args.repo is None else "as published"}
    try:
        for label, argv in (("real_triton", ["--serve-frontend", str(repo), triton.grpc_url]),
                            ("fake_engine", ["--serve-fake-frontend", str(repo)])):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            frontend = start_frontend([*argv, str(port)], url)
            try:
                result[label] = measure(frontend, url, args)
            finally:
                stop_frontend(frontend)
        result["grpc_floor"] = measure_grpc_floor(triton.grpc_url, args, None)
        # grpcio's classic client transport (no EventEngine client): less CPU per message, but messages come in
        # bursts more often (tokens held back), so the frontend keeps grpcio's default; measured for the record.
        result["grpc_floor_classic_transport"] = measure_grpc_floor(triton.grpc_url, args, "-event_engine_client")
        result["http_floor"] = measure_http_floor(triton.http_url, args)
        result["curl_floor"] = measure_curl_floor(triton.http_url, args)
    finally:
        triton.stop()
    result["frontend_cpu_us_per_token"] = result["real_triton"]["us_per_token"]
    result["frontend_own_us_per_token"] = result["fake_engine"]["us_per_token"]
    result["grpc_floor_us_per_token"] = result["grpc_floor"]["us_per_token"]
    result["curl_floor_us_per_token"] = (result["curl_floor"] or {}).get("us_per_token")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-frontend":
        serve_frontend(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "--serve-fake-frontend":
        serve_fake_frontend(sys.argv[2], int(sys.argv[3]))
    elif len(sys.argv) == 7 and sys.argv[1] == "--http-floor":
        http_floor(sys.argv[2], *map(int, sys.argv[3:7]))
    elif len(sys.argv) == 7 and sys.argv[1] == "--grpc-floor":
        grpc_floor(sys.argv[2], *map(int, sys.argv[3:7]))
    else:
        sys.exit(main())
