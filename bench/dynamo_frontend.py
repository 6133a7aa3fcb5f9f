"""trtpipe's frontend vs NVIDIA Dynamo's frontend on the same engine, and KV routing vs round-robin, in one run.

1. Frontend CPU per streamed token and TTFT, at concurrency 1 and 64:
   - trtpipe: Triton (the reference engine in its Python backend) + trtpipe's OpenAI frontend in its own process,
     started as bench/frontend_cpu.py starts it;
   - Dynamo: Dynamo's frontend (Rust, `python -m dynamo.frontend`) + one trtpipe Dynamo worker (the same
     reference engine, the same published version and limits, in-process).
   Each frontend process's CPU (user + system, /proc/<pid>/stat) over the load, less its idle CPU over the same
   wall time, divided by the tokens streamed (ignore_eos: every request streams exactly --max-tokens). TTFT is
   the client's time to the first streamed text. `serving_path_us_per_token` adds every other process of the
   path (tritonserver and its Python stub; the Dynamo worker), the engine's own work included.
2. Prefix-cache hit rate over 2 Dynamo workers, KV router vs round-robin, on a shared-prefix workload
   (--prefixes system prompts of ~--prefix-tokens tokens, each used by --requests-per-prefix requests with their
   own question, shuffled): the engines' own counters (prefix tokens reused / prompt tokens), and how many
   workers each prefix was served by.

    .venv/bin/python -m bench.dynamo_frontend            # writes bench/results/dynamo-frontend.{json,md,png}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.frontend_cpu import free_port, start_frontend, stop_frontend
from bench.machine_load import idle_fraction, process_cpu_s, wait_until_quiet

RESULTS = Path(__file__).resolve().parent / "results"


# --- load ----------------------------------------------------------------------------------------------------
async def stream_one(client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int,
                     extra: dict | None = None) -> tuple[int, float, dict]:
    """(completion tokens, TTFT s, the last chunk's nvext) of one streamed completion."""
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}, **(extra or {})}
    t0, ttft, tokens, nvext = time.perf_counter(), None, 0, {}
    async with client.stream("POST", f"{url}/v1/completions", json=body) as r:
        if r.status_code != 200:
            raise SystemExit(f"{url} answered {r.status_code}: {(await r.aread()).decode()[:500]}")
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if ttft is None and any(c.get("text") for c in chunk.get("choices") or []):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            nvext = chunk.get("nvext") or nvext
    return tokens, ttft or float("nan"), nvext


async def run_load(url: str, prompts: list[str], concurrency: int, max_tokens: int,
                   extra: dict | None = None, keepalive: bool = True) -> list[tuple[int, float, dict]]:
    """keepalive=False: a new connection per request (see ttft_new_connection_p50_ms)."""
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=None if keepalive else 0)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        async def bounded(p: str):
            async with sem:
                return await stream_one(client, url, p, max_tokens, extra)
        return list(await asyncio.gather(*(bounded(p) for p in prompts)))


def group_cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += process_cpu_s(pid)
        except (OSError, IndexError):
            pass
    return total


class ServingPath:
    """One serving path under measurement: its URL, its frontend process and every process of the path."""

    def __init__(self, name: str, url: str, frontend_pid: int, path_pids):
        self.name, self.url, self.frontend_pid, self.path_pids = name, url, frontend_pid, path_pids

    def cpu(self) -> tuple[float, float]:
        return process_cpu_s(self.frontend_pid), group_cpu_s(self.path_pids())

    def idle_rates(self) -> tuple[float, float]:
        """CPU per second of the frontend and of the whole path while no request runs (health checks, polls)."""
        (f0, p0), t0 = self.cpu(), time.monotonic()
        time.sleep(2.0)
        (f1, p1), wall = self.cpu(), time.monotonic() - t0
        return (f1 - f0) / wall, (p1 - p0) / wall


def measure_pair(paths: list[ServingPath], args, concurrency: int) -> dict[str, dict]:
    """The same load on each path, the paths alternating run by run, so that what else the (shared) machine does
    falls on both alike: frontend CPU per streamed token (idle subtracted), the whole path's, TTFT, throughput."""
    n = args.requests_c1 if concurrency == 1 else args.requests_c64
    prompts = [f"Request {i}: tell me about robots number {i}." for i in range(n)]
    idle = {}
    for p in paths:
        asyncio.run(run_load(p.url, prompts[:8], min(8, concurrency), 16))  # warm-up
        idle[p.name] = p.idle_rates()
    runs: dict[str, list] = {p.name: [] for p in paths}
    for _ in range(args.repeat):
        for p in paths:
            wait_until_quiet(0.8, 20)
            machine_idle = idle_fraction(0.3)
            (f0, p0), t0 = p.cpu(), time.monotonic()
            results = asyncio.run(run_load(p.url, prompts, concurrency, args.max_tokens))
            (f1, p1), wall = p.cpu(), time.monotonic() - t0
            tokens = sum(r[0] for r in results)
            if tokens != n * args.max_tokens:
                raise SystemExit(f"{p.url}: expected {n * args.max_tokens} tokens, got {tokens}")
            ttfts = sorted(r[1] for r in results)
            idle_f, idle_p = idle[p.name]
            runs[p.name].append({
                "frontend_us_per_token": 1e6 * (f1 - f0 - idle_f * wall) / tokens,
                "serving_path_us_per_token": 1e6 * (p1 - p0 - idle_p * wall) / tokens,
                "ttft_p50_ms": 1e3 * statistics.median(ttfts), "ttft_p90_ms": 1e3 * ttfts[int(0.9 * (len(ttfts) - 1))],
                "tokens_per_s": tokens / wall, "machine_idle_before": round(machine_idle, 2)})
    keys = ("frontend_us_per_token", "serving_path_us_per_token", "ttft_p50_ms", "ttft_p90_ms", "tokens_per_s")
    out = {}
    for name, rs in runs.items():
        out[name] = {k: round(statistics.median(r[k] for r in rs), 1) for k in keys}
        if concurrency == 1:
            # NOTE: on a kept-alive connection Dynamo 1.6.1's HTTP server holds the first streamed chunk ~40 ms
            # (seen here: Nagle's algorithm on its socket meeting the client's delayed ACK; a new connection,
            # whose ACKs are not delayed yet, does not see it), so TTFT is also measured one connection per request.
            p = next(p for p in paths if p.name == name)
            fresh = asyncio.run(run_load(p.url, prompts, 1, args.max_tokens, keepalive=False))
            out[name]["ttft_new_connection_p50_ms"] = round(1e3 * statistics.median(r[1] for r in fresh), 1)
        out[name].update(requests=n, idle_cpu_per_s=[round(x, 4) for x in idle[name]],
                         runs=[{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()} for r in rs])
    return out


def proc_tree(root: int) -> list[int]:
    """root and every descendant (tritonserver's Python stubs are its children)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


# --- the paths ---------------------------------------------------------------------------------------------------
def dynamo_stack(repo: Path, home: Path, workers: int, router_mode: str):
    from trtpipe.dynamo.stack import DynamoStack, StackOptions, free_system_port

    return DynamoStack(StackOptions(repo=repo, models=["tiny-llama"], port=free_system_port(), workers=workers,
                                    router_mode=router_mode, work_dir=Path(tempfile.mkdtemp(dir=home)),
                                    drain_timeout_s=5))


def frontends(repo: Path, home: Path, args) -> dict[str, dict]:
    """trtpipe (Triton + its frontend) and Dynamo (its frontend + one trtpipe worker), both up, measured in turn.
    Each engine gets the BLAS threads `trtpipe serve` gives it: the cores but one."""
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_path=home / "triton.log",
                          exit_timeout_s=2)
    triton.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    frontend = start_frontend(["--serve-frontend", str(repo), triton.grpc_url, str(port)], url)
    try:
        with dynamo_stack(repo, home, 1, "kv") as stack:
            worker = stack.workers[0].proc.pid
            paths = [ServingPath("trtpipe", url, frontend.pid, lambda: proc_tree(triton.process.pid)),
                     ServingPath("dynamo", stack.url.removesuffix("/v1"), stack.frontend.proc.pid, lambda: [worker])]
            by_c = {str(c): measure_pair(paths, args, c) for c in (1, 64)}
    finally:
        stop_frontend(frontend)
        triton.stop()
    return {name: {c: by_c[c][name] for c in by_c} for name in ("trtpipe", "dynamo")}


def prefix_routing(repo: Path, home: Path, args, router_mode: str, concurrency: int) -> dict:
    rng = random.Random(7)
    words = "harbour ship cargo crane tide pier anchor sail rope deck hull mast keel buoy dock lane".split()
    prefixes = [" ".join(rng.choice(words) for _ in range(args.prefix_tokens)) for _ in range(args.prefixes)]
    jobs = [(p, f"{prefixes[p]}\nQuestion {q}: what happens next?") for p in range(args.prefixes)
            for q in range(args.requests_per_prefix)]
    rng.shuffle(jobs)
    with dynamo_stack(repo, home, 2, router_mode) as stack:
        url = stack.url.removesuffix("/v1")
        before = [stack.worker_stats(w) for w in stack.workers]
        results = asyncio.run(run_load(url, [j[1] for j in jobs], concurrency, 4,
                                       {"nvext": {"extra_fields": ["worker_id"]}}))
        after = [stack.worker_stats(w) for w in stack.workers]
    hits = sum(a["prefix_cache_hits"] - b["prefix_cache_hits"] for a, b in zip(after, before))
    queries = sum(a["prefix_cache_queries"] - b["prefix_cache_queries"] for a, b in zip(after, before))
    served: dict[int, set] = {}
    for (p, _), (_, _, nvext) in zip(jobs, results):
        served.setdefault(p, set()).add((nvext.get("worker_id") or {}).get("decode_worker_id"))
    per_worker = [a["prefix_cache_queries"] - b["prefix_cache_queries"] for a, b in zip(after, before)]
    return {"router_mode": router_mode, "concurrency": concurrency, "requests": len(jobs),
            "prefix_hit_rate": round(hits / queries, 3), "prefix_tokens_reused": hits, "prompt_tokens": queries,
            "prefixes_on_one_worker": sum(len(s) == 1 for s in served.values()),
            "prompt_tokens_per_worker": per_worker}


# --- report ----------------------------------------------------------------------------------------------------
def ratios(result: dict) -> dict:
    out = {}
    for c in ("1", "64"):
        t, d = result["trtpipe"][c], result["dynamo"][c]
        out[f"c{c}"] = {k: round(d[k] / t[k], 2) for k in
                        ("frontend_us_per_token", "serving_path_us_per_token", "ttft_p50_ms", "tokens_per_s")}
    for c in sorted({m["concurrency"] for m in result["prefix"]}):
        kv, rr = (next(m for m in result["prefix"] if m["concurrency"] == c and m["router_mode"] == mode)
                  for mode in ("kv", "round-robin"))
        out[f"prefix_hit_rate_kv_over_round_robin_c{c}"] = round(kv["prefix_hit_rate"] / max(rr["prefix_hit_rate"],
                                                                                            1e-9), 2)
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, key, title in ((axes[0], "frontend_us_per_token", "frontend CPU per streamed token (us)"),
                           (axes[1], "ttft_p50_ms", "TTFT p50 (ms), kept-alive connections")):
        xs = range(2)
        for k, (name, color) in enumerate((("trtpipe", "tab:blue"), ("dynamo", "tab:green"))):
            vals = [result[name][c][key] for c in ("1", "64")]
            ax.bar([x + 0.38 * k for x in xs], vals, 0.38, label=name, color=color)
        ax.set_xticks([x + 0.19 for x in xs], ["concurrency 1", "concurrency 64"])
        ax.set_title(title)
        ax.legend()
    prefix = result["prefix"]
    axes[2].bar([f"{m['router_mode']}\nc{m['concurrency']}" for m in prefix], [m["prefix_hit_rate"] for m in prefix],
                color=["tab:green" if m["router_mode"] == "kv" else "tab:gray" for m in prefix])
    axes[2].set_ylim(0, 1)
    axes[2].set_title(f"prefix-cache hit rate, 2 workers ({prefix[0]['requests']} requests)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(result: dict) -> str:
    r = result["ratios"]
    lines = ["# trtpipe's frontend vs Dynamo's frontend (same reference engine), KV routing vs round-robin", "",
             f"`{result['command']}` on {result['machine']}; median of {result['repeat']} runs; "
             f"{result['max_tokens']} tokens per request (ignore_eos).", "",
             "| | concurrency | frontend CPU us/token | serving path CPU us/token | TTFT p50 ms | TTFT p90 ms "
             "| TTFT p50 ms, new connection each | tokens/s |", "|---|---|---|---|---|---|---|---|"]
    for name in ("trtpipe", "dynamo"):
        for c in ("1", "64"):
            m = result[name][c]
            lines.append(f"| {name} | {c} | {m['frontend_us_per_token']} | {m['serving_path_us_per_token']} | "
                         f"{m['ttft_p50_ms']} | {m['ttft_p90_ms']} | {m.get('ttft_new_connection_p50_ms', '')} | "
                         f"{m['tokens_per_s']} |")
    lines += ["", "Ratios (Dynamo / trtpipe): " + "; ".join(
        f"{c}: frontend CPU {r[c]['frontend_us_per_token']}x, path CPU {r[c]['serving_path_us_per_token']}x, "
        f"TTFT {r[c]['ttft_p50_ms']}x, throughput {r[c]['tokens_per_s']}x" for c in ("c1", "c64")), ""]
    lines += ["| 2 workers | client concurrency | prefix hit rate | prefix tokens reused / prompt tokens "
              "| prefixes served by one worker | prompt tokens per worker |", "|---|---|---|---|---|---|"]
    for m in result["prefix"]:
        lines.append(f"| {m['router_mode']} | {m['concurrency']} | {m['prefix_hit_rate']} | "
                     f"{m['prefix_tokens_reused']} / {m['prompt_tokens']} | {m['prefixes_on_one_worker']} of "
                     f"{result['prefixes']} | {m['prompt_tokens_per_worker']} |")
    lines += ["", "KV / round-robin hit rate: " + ", ".join(
        f"{k.rsplit('_', 1)[1]}: {v}x" for k, v in r.items() if k.startswith("prefix_hit_rate")), ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests-c1", type=int, default=16)
    ap.add_argument("--requests-c64", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prefixes", type=int, default=16)
    ap.add_argument("--requests-per-prefix", type=int, default=8)
    ap.add_argument("--prefix-tokens", type=int, default=200, help="words per shared prefix (about as many tokens)")
    ap.add_argument("--prefix-concurrency", type=int, default=4)
    ap.add_argument("--name", default="dynamo-frontend", help="results file stem under bench/results/")
    args = ap.parse_args()

    home = Path(tempfile.mkdtemp(prefix="trtpipe-dynamo-bench-"))
    os.environ["TRTPIPE_HOME"] = str(home)
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = home / "model_repository"
    build(load_config("tiny-llama"), repo)
    result = {"command": " ".join(["python -m bench.dynamo_frontend", *sys.argv[1:]]),
              "machine": f"{os.cpu_count()} cores", "max_tokens": args.max_tokens, "repeat": args.repeat,
              "prefixes": args.prefixes}
    result.update(frontends(repo, home, args))
    result["prefix"] = [prefix_routing(repo, home, args, mode, c) for c in (1, args.prefix_concurrency)
                        for mode in ("kv", "round-robin")]
    result["ratios"] = ratios(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown(result))
    plot(result, RESULTS / f"{args.name}.png")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
