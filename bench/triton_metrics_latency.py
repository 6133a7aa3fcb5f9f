"""How long a scrape of Triton's /metrics takes while the reference engine is busy, by engine thread count.

For each thread count, starts a real Triton on tiny-llama with that many BLAS threads for the engine
(`TritonServer(engine_threads=N)`, what `trtpipe serve --engine-threads N` does), runs a long generation
(--choices sequences x --max-tokens tokens over gRPC, in a process of its own) and scrapes /metrics from this
process every 50 ms until the generation ends. Reports the scrape latencies and how long the generation took.

    .venv/bin/python -m bench.triton_metrics_latency                  # all cores, then the default (all but one)
    .venv/bin/python -m bench.triton_metrics_latency --threads 2,1 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.frontend_cpu import free_port


def generate(grpc_url: str, choices: int, max_tokens: int) -> None:
    """The child process: `choices` greedy sequences of exactly `max_tokens` tokens at once."""
    from trtpipe.serve.engine_client import EngineCall, TritonEngineClient

    async def run() -> None:
        client = TritonEngineClient(grpc_url)

        async def one(i: int) -> None:
            call = EngineCall(input_ids=[5 + i, 6, 7, 8], max_new_tokens=max_tokens, temperature=0.0,
                              min_tokens=max_tokens)
            async for _ in client.generate("tiny-llama-engine", call):
                pass

        await asyncio.gather(*(one(i) for i in range(choices)))
        await client.close()

    asyncio.run(run())


def scrape_while_busy(triton, args) -> dict:
    url = f"http://127.0.0.1:{triton.ports.metrics}/metrics"
    child = multiprocessing.get_context("spawn").Process(target=generate,
                                                         args=(triton.grpc_url, args.choices, args.max_tokens))
    t0 = time.monotonic()
    child.start()
    time.sleep(0.2)  # past the prefill
    latencies = []
    while child.is_alive():
        ts = time.monotonic()
        httpx.get(url, timeout=30)
        latencies.append(time.monotonic() - ts)
        time.sleep(0.05)
    child.join()
    return {"generation_s": time.monotonic() - t0, "latencies_s": latencies}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from trtpipe.serve.process.launcher import usable_cpus

    cpus = usable_cpus()
    ap.add_argument("--threads", default=f"{cpus},{max(1, cpus - 1)}",
                    help="comma-separated engine thread counts (default: all cores, then all but one)")
    ap.add_argument("--rounds", type=int, default=3, help="generations per thread count")
    ap.add_argument("--choices", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=512)
    args = ap.parse_args()

    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    home = Path(tempfile.mkdtemp(prefix="trtpipe-scrape-"))
    os.environ["TRTPIPE_HOME"] = str(home)
    repo = home / "model_repository"
    build(load_config("tiny-llama", []), repo)
    result = {"cpus": cpus, "choices": args.choices, "max_tokens": args.max_tokens, "by_threads": {}}
    for threads in (int(t) for t in args.threads.split(",")):
        with TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_path=home / "triton.log",
                          exit_timeout_s=2, engine_threads=threads) as triton:
            runs = [scrape_while_busy(triton, args) for _ in range(args.rounds)]
        lat = sorted(x for r in runs for x in r["latencies_s"])
        result["by_threads"][threads] = {
            "scrapes": len(lat), "scrape_p50_s": round(statistics.median(lat), 3), "scrape_max_s": round(lat[-1], 3),
            "generation_s": [round(r["generation_s"], 2) for r in runs]}
        print(f"engine threads {threads}: {result['by_threads'][threads]}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
