"""Tokens/s through the frontend with and without a JSON schema, at concurrency 1 and 16, in the same run.

Builds tiny-llama into a throwaway TRTPIPE_HOME, starts one real Triton and the frontend in its own process
(bench/baseline.py's `Frontend`), then at each concurrency runs the plain and the schema-guided side in
alternating rounds (P G, G P, ...) so that drift on the shared machine falls on both sides alike. Each
request is a chat completion at temperature 1 with its own seed: guided ones with `response_format:
json_schema`, ending when the grammar is complete; plain ones with ignore_eos and max_tokens = the mean
length of the guided outputs in a warm-up, so that both sides amortize each request's fixed costs over the
same number of tokens. Tokens/s = completion tokens of the side / its wall time. Also measured: the one-time
cost of a new schema, as the extra latency of its first request over a request with a schema already cached
(both with max_tokens 1, several fresh schemas).

    .venv/bin/python -m bench.structured_outputs                     # about 2 minutes
    .venv/bin/python -m bench.structured_outputs --concurrency 1,16 --rounds 2 --requests 32

Writes bench/results/structured-outputs.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.baseline import Frontend, free_port

OUT = Path(__file__).resolve().parent / "results"
MESSAGES = [{"role": "user", "content": "Write a short report as JSON."}]
SCHEMA = {"type": "object", "required": ["title", "notes"], "additionalProperties": False,
          "properties": {"title": {"type": "string", "maxLength": 24},
                         "notes": {"type": "array", "minItems": 4, "maxItems": 4,
                                   "items": {"type": "string", "maxLength": 16}}}}


def body(side: str, seed: int, schema: dict = SCHEMA, max_tokens: int = 64) -> dict:
    b = {"model": "tiny-llama", "messages": MESSAGES, "temperature": 1.0, "seed": seed, "max_tokens": max_tokens}
    if side == "plain":
        b["ignore_eos"] = True
    else:
        b["max_tokens"] = 400
        b["response_format"] = {"type": "json_schema", "json_schema": {"name": "report", "schema": schema}}
    return b


async def run_side(http: httpx.AsyncClient, url: str, side: str, concurrency: int, num_requests: int,
                   seed0: int, plain_tokens: int = 64) -> tuple[int, float, int]:
    """-> (completion tokens, wall seconds, requests whose guided output did not parse)."""
    queue = list(range(num_requests))
    tokens, bad = 0, 0

    async def worker():
        nonlocal tokens, bad
        while queue:
            i = queue.pop()
            r = await http.post(f"{url}/chat/completions", json=body(side, seed0 + i, max_tokens=plain_tokens))
            if r.status_code != 200:
                raise RuntimeError(f"{side} request failed: {r.status_code} {r.text[:200]}")
            out = r.json()
            tokens += out["usage"]["completion_tokens"]
            if side == "guided":
                try:
                    json.loads(out["choices"][0]["message"]["content"])
                except json.JSONDecodeError:
                    bad += 1

    t = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return tokens, time.perf_counter() - t, bad


async def compile_cost(http: httpx.AsyncClient, url: str, repeats: int) -> dict:
    """Latency of a first request with a new schema vs a second with the same (cached) schema, max_tokens 1."""
    first, again = [], []
    for i in range(repeats):
        schema = {**SCHEMA, "title": f"fresh {i} {time.time_ns()}"}  # a new guide text: a cache miss everywhere
        for sink in (first, again):
            t = time.perf_counter()
            r = await http.post(f"{url}/chat/completions", json=body("guided", i, schema) | {"max_tokens": 1})
            sink.append(time.perf_counter() - t)
            if r.status_code != 200:
                raise RuntimeError(f"compile-cost request failed: {r.status_code} {r.text[:200]}")
    return {"first_ms": statistics.median(first) * 1e3, "cached_ms": statistics.median(again) * 1e3,
            "one_time_cost_ms": (statistics.median(first) - statistics.median(again)) * 1e3, "repeats": repeats}


async def measure(url: str, concurrencies: list[int], rounds: int, num_requests: int) -> dict:
    points = []
    async with httpx.AsyncClient(timeout=300, limits=httpx.Limits(max_connections=64)) as http:
        # Warm-up (compile caches, first requests), and the guided outputs' mean length.
        warm_tokens, _, _ = await run_side(http, url, "guided", 2, 8, 10_000)
        plain_tokens = round(warm_tokens / 8)
        for c in concurrencies:
            totals = {"plain": [0, 0.0], "guided": [0, 0.0]}
            bad = 0
            for r in range(rounds):
                for side in (("plain", "guided") if r % 2 == 0 else ("guided", "plain")):
                    tokens, wall, b = await run_side(http, url, side, c, num_requests, 1000 * r, plain_tokens)
                    totals[side][0] += tokens
                    totals[side][1] += wall
                    bad += b
            tps = {s: t / w for s, (t, w) in totals.items()}
            points.append({"concurrency": c, "plain_tokens_per_s": tps["plain"], "guided_tokens_per_s": tps["guided"],
                           "guided_over_plain": tps["guided"] / tps["plain"], "guided_outputs_not_parsing": bad,
                           "tokens": {s: t for s, (t, _) in totals.items()}})
            print(f"concurrency {c}: plain {tps['plain']:.1f} tok/s, guided {tps['guided']:.1f} tok/s "
                  f"({tps['guided'] / tps['plain']:.2f}x), unparsable guided outputs: {bad}")
        compile_ms = await compile_cost(http, url, 6)
    return {"points": points, "compile": compile_ms, "plain_max_tokens": plain_tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--requests", type=int, default=32, help="requests per side per round")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:
        os.environ["TRTPIPE_HOME"] = home
        from trtpipe.build import build
        from trtpipe.config import load_config
        from trtpipe.serve.process.launcher import TritonPorts, TritonServer

        repo = Path(home) / "model_repository"
        build(load_config("tiny-llama"), repo)
        triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                              log_path=Path(home) / "tritonserver.log", exit_timeout_s=2)
        triton.start()
        frontend = Frontend(repo, triton.grpc_url, Path(home) / "frontend.log")
        try:
            frontend.start()
            result = asyncio.run(measure(frontend.url, [int(c) for c in args.concurrency.split(",")], args.rounds,
                                         args.requests))
        finally:
            frontend.stop()
            triton.stop()
    result |= {"schema": SCHEMA, "load_avg_1m_at_end": os.getloadavg()[0],
               "note": "2-core machine shared with other jobs; plain and guided sides alternate per round."}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "structured-outputs.json").write_text(json.dumps(result, indent=2) + "\n")
    c = result["compile"]
    lines = ["# Tokens/s with and without a JSON schema (tiny-llama, through the frontend, real Triton)", "",
             "`bench/structured_outputs.py`: chat completions at temperature 1; plain = ignore_eos, "
             f"{result['plain_max_tokens']} tokens (the guided outputs' mean length in the warm-up); "
             "guided = `response_format: json_schema` (the script's `SCHEMA`), ending when the grammar is complete. "
             "Sides alternate per round on a shared 2-core machine (1-minute load average at the end: "
             f"{result['load_avg_1m_at_end']:.1f}); compare the ratios, measured in the same run.", "",
             "| concurrency | plain tokens/s | guided tokens/s | guided / plain | tokens (plain, guided) | "
             "guided outputs that did not parse |",
             "| --- | --- | --- | --- | --- | --- |"]
    for p in result["points"]:
        lines.append(f"| {p['concurrency']} | {p['plain_tokens_per_s']:.1f} | {p['guided_tokens_per_s']:.1f} | "
                     f"{p['guided_over_plain']:.2f}x | {p['tokens']['plain']}, {p['tokens']['guided']} | "
                     f"{p['guided_outputs_not_parsing']} |")
    lines += ["", f"One-time cost of a new schema (first request minus a cached one, max_tokens 1, median of "
              f"{c['repeats']}): {c['one_time_cost_ms']:.2f} ms (first {c['first_ms']:.2f} ms, cached "
              f"{c['cached_ms']:.2f} ms). It is compiled twice, once by the frontend to validate and once by "
              "the engine; each caches it.", ""]
    (args.out / "structured-outputs.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
