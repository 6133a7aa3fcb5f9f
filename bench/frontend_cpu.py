"""Frontend CPU per streamed token: what the OpenAI frontend itself costs, excluding the engine and the client.

Starts one real Triton on tiny-llama and the frontend in its own process (uvicorn, exactly as `trtpipe serve`
builds it), streams N completions (ignore_eos, so every request yields exactly --max-tokens tokens) at a
given concurrency from this process, and reads the frontend process's CPU time (user + system, from
/proc/<pid>/stat) before and after. The frontend's idle CPU (health checks) over the same wall time is
measured first and subtracted.

It then runs the same load through the frontend's Triton client alone (TritonEngineClient.generate, one
gRPC stream per request, no HTTP) in a child process: that is the floor any gRPC-fed frontend pays per
token (grpcio receiving one message per token). `frontend_own_us_per_token` is the difference: HTTP,
detokenization, chunk formatting and metrics.

    .venv/bin/python bench/frontend_cpu.py                       # 64 requests x 128 tokens at concurrency 16
    .venv/bin/python bench/frontend_cpu.py --requests 128 --concurrency 64 --max-tokens 64 --repo REPO
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def serve_frontend(repo: str, grpc_url: str, port: int) -> None:
    import uvicorn

    from trtpipe.serve.app import FrontendSettings, create_app

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


async def grpc_floor(grpc_url: str, n: int, concurrency: int, max_tokens: int) -> None:
    """The child process: N engine streams through TritonEngineClient; prints its CPU per token as JSON."""
    from trtpipe.serve.triton_stream import EngineCall, TokenDelta, TritonEngineClient

    client = TritonEngineClient(grpc_url)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> int:
        call = EngineCall(input_ids=[10 + i % 500, 20, 30, 40 + i % 7], max_new_tokens=max_tokens, temperature=0.0,
                          min_tokens=max_tokens)
        async with sem:
            return sum([len(ev.token_ids) async for ev in client.generate("tiny-llama-engine", call)
                        if type(ev) is TokenDelta])

    await asyncio.gather(*(one(i) for i in range(min(8, n))))
    c0 = time.process_time()
    tokens = sum(await asyncio.gather(*(one(i) for i in range(n))))
    print(json.dumps({"tokens": tokens, "us_per_token": 1e6 * (time.process_time() - c0) / tokens}))


def floor_run(grpc_url: str, args) -> float:
    out = subprocess.run([sys.executable, __file__, "--grpc-floor", grpc_url, str(args.requests),
                          str(args.concurrency), str(args.max_tokens)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["us_per_token"]


async def one_request(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int) -> int:
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    tokens = 0
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        r.raise_for_status()
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
    args = ap.parse_args()

    from trtpipe.serve.launcher import TritonPorts, TritonServer

    home = Path(tempfile.mkdtemp(prefix="trtpipe-cpu-"))
    os.environ.setdefault("TRTPIPE_HOME", str(home))
    repo = args.repo
    if repo is None:
        from trtpipe.build import build
        from trtpipe.config import load_config

        repo = home / "model_repository"
        build(load_config("tiny-llama"), repo)
    triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_path=home / "triton.log",
                          exit_timeout_s=2)
    triton.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    frontend = subprocess.Popen([sys.executable, __file__, "--serve-frontend", str(repo), triton.grpc_url, str(port)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or frontend.poll() is not None:
                raise SystemExit("the frontend did not become ready")
            time.sleep(0.2)
        asyncio.run(run_load(url, min(8, args.requests), min(8, args.concurrency), 16))  # warm-up
        idle0, t0 = cpu_seconds(frontend.pid), time.monotonic()
        time.sleep(2.0)
        idle_rate = (cpu_seconds(frontend.pid) - idle0) / (time.monotonic() - t0)
        # Frontend and floor runs interleaved, --repeat times each: this kind of machine is noisy, the median holds.
        runs, floors = [], []
        for _ in range(args.repeat):
            c0, t0 = cpu_seconds(frontend.pid), time.monotonic()
            tokens = asyncio.run(run_load(url, args.requests, args.concurrency, args.max_tokens))
            cpu, wall = cpu_seconds(frontend.pid) - c0, time.monotonic() - t0
            runs.append({"tokens": tokens, "wall_s": wall, "cpu_s": cpu,
                         "us_per_token": 1e6 * (cpu - idle_rate * wall) / max(tokens, 1)})
            floors.append(floor_run(triton.grpc_url, args))
        per_token = statistics.median(r["us_per_token"] for r in runs)
        floor = statistics.median(floors)
        print(json.dumps({"requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
                          "repeats": args.repeat, "streamed_tokens_per_run": runs[0]["tokens"],
                          "tokens_per_s": round(statistics.median(r["tokens"] / r["wall_s"] for r in runs), 1),
                          "idle_cpu_per_s": round(idle_rate, 4),
                          "frontend_cpu_us_per_token": round(per_token, 1),
                          "frontend_cpu_us_per_token_runs": [round(r["us_per_token"], 1) for r in runs],
                          "grpc_client_floor_us_per_token": round(floor, 1),
                          "grpc_client_floor_runs": [round(f, 1) for f in floors],
                          "frontend_own_us_per_token": round(per_token - floor, 1)}, indent=2))
    finally:
        frontend.send_signal(signal.SIGTERM)
        try:
            frontend.wait(30)
        except subprocess.TimeoutExpired:
            frontend.kill()
        triton.stop()
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-frontend":
        serve_frontend(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 6 and sys.argv[1] == "--grpc-floor":
        asyncio.run(grpc_floor(sys.argv[2], *map(int, sys.argv[3:])))
    else:
        sys.exit(main())
