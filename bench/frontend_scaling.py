"""Frontend scaling: streamed tokens/s and CPU per token of `trtpipe serve --api-servers N`, engine cost removed.

Builds tiny-llama (once per --stream-intervals value), replaces its engine's Triton model with
bench/zero_cost_engine/model.py (same config.pbtxt and tensors; it streams pre-made tokens on a fixed step
clock, so the engine costs nothing), starts one real Triton on it, then `trtpipe serve --triton ...
--api-servers 1` and `--api-servers 2` side by side (real processes, the product's code path). Runs of the same
load (ignore_eos streams, --requests at --concurrency) go to N=1 and N=2 alternately (1,2 then 2,1, ...), so
each ratio N=2/N=1 compares runs a minute apart at most on a shared machine. For each run: tokens/s the
client received, CPU of the frontend's processes per token (their idle CPU over the same wall time
subtracted), the load average, and the CPU other programs used meanwhile.

The client is a bare asyncio socket per request (Connection: close, no per-token parsing) so that it takes
as little of the machine as it can; its CPU is reported too. Projection: tokens/s one process can carry is
1e6 / (us per token) at one full core; the N needed for a published GPU rate is that rate over 75% of it
(a process kept at 100% CPU queues every chunk behind the others).

    .venv/bin/python -m bench.frontend_scaling                 # 3 pairs per stream interval, ~4 minutes
    .venv/bin/python -m bench.frontend_scaling --repeat 5 --concurrency 64 --stream-intervals 1,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
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

from bench.machine_load import _machine_busy_s, process_cpu_s

HERE = Path(__file__).resolve().parent

# TensorRT-LLM's published throughput table (docs/source/performance/perf-overview.md, "Llama 3.1 8B FP8",
# H100 80GB HBM3, TP 1, trtllm-bench, output tokens/s): the highest and a long-output case.
H100_8B_FP8 = {"isl128_osl128": 27568.68, "isl128_osl2048": 22003.62}
H100_SOURCE = ("NVIDIA TensorRT-LLM docs, performance/perf-overview.md, Llama 3.1 8B FP8, H100 80GB HBM3, TP1 "
               "(ISL/OSL 128/128: 27,568.68 tok/s; 128/2048: 22,003.62 tok/s)")
HEADROOM = 0.75
USAGE = re.compile(rb'"completion_tokens":(\d+)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    for p in tree_pids(pid):
        try:
            total += process_cpu_s(p)
        except OSError:
            pass  # ended meanwhile
    return total


def build_repo(home: Path, stream_interval: int, step_s: float) -> Path:
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = home / f"repo-si{stream_interval}"
    build(load_config("tiny-llama", [f"serving.stream_interval={stream_interval}"]), repo)
    version_dir = repo / "tiny-llama-engine" / "1"
    shutil.copy(HERE / "zero_cost_engine" / "model.py", version_dir / "model.py")
    (version_dir / "zero_cost.json").write_text(json.dumps({"step_s": step_s}))
    return repo


def start_serve(repo: Path, grpc_url: str, num: int, home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log_path = home / f"serve-n{num}-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "trtpipe", "serve", "--repo", str(repo), "--port", str(port),
                                    "--triton", grpc_url, "--api-servers", str(num), "--max-running", "1024",
                                    "--max-waiting", "1024"], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "TRTPIPE_HOME": str(home)})
    deadline = time.monotonic() + 120
    while "OpenAI frontend on" not in log_path.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"serve --api-servers {num} did not start:\n{log_path.read_text()[-2000:]}")
        time.sleep(0.2)
    url = f"http://127.0.0.1:{port}"
    while httpx.get(f"{url}/health/ready", timeout=5).status_code != 200:
        time.sleep(0.2)
    return process, url


async def one_request(host: str, port: int, body: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /v1/completions HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (host.encode(), len(body), body))
    tail = b""
    while chunk := await reader.read(65536):
        tail = (tail + chunk)[-4096:]  # the usage chunk is at the end
    writer.close()
    if b"data: [DONE]" not in tail:
        raise SystemExit(f"a stream did not end with [DONE]: {tail[-300:]!r}")
    counts = USAGE.findall(tail)
    if not counts:
        raise SystemExit(f"no usage in the stream's last chunk: {tail[-300:]!r}")
    return int(counts[-1])


async def run_load(url: str, requests: int, concurrency: int, max_tokens: int) -> int:
    host, port = url.removeprefix("http://").split(":")
    sem = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> int:
        body = json.dumps({"model": "tiny-llama", "prompt": f"Request {i}: tell me about robots.", "stream": True,
                           "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                           "stream_options": {"include_usage": True}}).encode()
        async with sem:
            return await one_request(host, int(port), body)

    return sum(await asyncio.gather(*(bounded(i) for i in range(requests))))


def measure_run(serve: subprocess.Popen, triton_pid: int, url: str, idle_rate: float, args) -> dict:
    f0, t0, c0 = tree_cpu_s(serve.pid), tree_cpu_s(triton_pid), process_cpu_s()
    busy0, w0, load0 = _machine_busy_s()[0], time.monotonic(), os.getloadavg()[0]
    tokens = asyncio.run(run_load(url, args.requests, args.concurrency, args.max_tokens))
    wall = time.monotonic() - w0
    front, triton, client = tree_cpu_s(serve.pid) - f0, tree_cpu_s(triton_pid) - t0, process_cpu_s() - c0
    foreign = (_machine_busy_s()[0] - busy0) - front - triton - client
    if tokens != args.requests * args.max_tokens:
        raise SystemExit(f"expected {args.requests * args.max_tokens} tokens, received {tokens}")
    return {"tokens": tokens, "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "frontend_cpu_s": round(front, 3), "frontend_cores": round(front / wall, 2),
            "us_per_token": round(1e6 * (front - idle_rate * wall) / tokens, 1),
            "triton_us_per_token": round(1e6 * triton / tokens, 1),
            "client_us_per_token": round(1e6 * client / tokens, 1),
            "foreign_cores": round(max(0.0, foreign) / wall, 2),
            "loadavg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)]}


def idle_cpu_rate(pid: int, seconds: float = 2.0) -> float:
    c0, t0 = tree_cpu_s(pid), time.monotonic()
    time.sleep(seconds)
    return (tree_cpu_s(pid) - c0) / (time.monotonic() - t0)


def one_interval(stream_interval: int, home: Path, args) -> dict:
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    repo = build_repo(home, stream_interval, args.step_ms / 1000)
    triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                          log_path=home / f"triton-si{stream_interval}.log", exit_timeout_s=2)
    triton.start()
    serves: dict[int, tuple[subprocess.Popen, str]] = {}
    try:
        for n in (1, 2):
            serves[n] = start_serve(repo, triton.grpc_url, n, home)
        idle, runs = {}, {1: [], 2: []}
        for n, (proc, url) in serves.items():
            asyncio.run(run_load(url, min(16, args.requests), min(16, args.concurrency), 16))  # warm-up
            idle[n] = idle_cpu_rate(proc.pid)
        pairs = []
        for rep in range(args.repeat):
            order = (1, 2) if rep % 2 == 0 else (2, 1)
            got = {}
            for n in order:
                proc, url = serves[n]
                got[n] = measure_run(proc, triton.process.pid, url, idle[n], args)
                runs[n].append(got[n])
                print(f"stream_interval={stream_interval} N={n}: {got[n]['tokens_per_s']:.0f} tok/s, "
                      f"{got[n]['us_per_token']:.0f} us/token, frontend {got[n]['frontend_cores']} cores, "
                      f"load {got[n]['loadavg_1m']}", flush=True)
            pairs.append(round(got[2]["tokens_per_s"] / got[1]["tokens_per_s"], 3))
    finally:
        for proc, _ in serves.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _ in serves.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        triton.stop()
    summary = {}
    for n in (1, 2):
        rs = runs[n]
        summary[f"n{n}"] = {"idle_cpu_per_s": round(idle[n], 4),
                            "tokens_per_s": round(statistics.median(r["tokens_per_s"] for r in rs), 1),
                            "us_per_token": round(statistics.median(r["us_per_token"] for r in rs), 1),
                            "frontend_cores": round(statistics.median(r["frontend_cores"] for r in rs), 2),
                            "runs": rs}
    us = summary["n1"]["us_per_token"]
    ceiling = 1e6 / us
    return {"stream_interval": stream_interval, **summary,
            "ratio_n2_over_n1_tokens_per_s": {"pairs": pairs, "median": round(statistics.median(pairs), 3)},
            "offered_tokens_per_s": round(args.concurrency * 1000 / args.step_ms, 1),
            "per_process_ceiling_tokens_per_s": round(ceiling, 1),
            "projected_api_servers": {k: {"target_tokens_per_s": v, "n_at_full_core": math.ceil(v / ceiling),
                                          f"n_at_{int(HEADROOM * 100)}pct": math.ceil(v / (ceiling * HEADROOM))}
                                      for k, v in H100_8B_FP8.items()}}


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "frontend-scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Frontend scaling: `trtpipe serve --api-servers N` with a zero-cost engine", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']}", "",
             f"Load per run: {result['requests']} streams x {result['max_tokens']} tokens at concurrency "
             f"{result['concurrency']}; engine step {result['step_ms']} ms (offered "
             f"{result['intervals'][0]['offered_tokens_per_s']:.0f} tok/s). N=1 and N=2 measured alternately, "
             f"{result['repeat']} pairs per stream interval.", "",
             "| stream_interval | N | tokens/s (median) | frontend us CPU/token | frontend cores | N=2/N=1 tokens/s "
             "(pairs) | Triton us CPU/token | client us CPU/token | load avg (1 min) | other programs (cores) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for iv in result["intervals"]:
        for n in (1, 2):
            s = iv[f"n{n}"]
            loads = [r["loadavg_1m"][0] for r in s["runs"]]
            foreign = [r["foreign_cores"] for r in s["runs"]]
            r = iv["ratio_n2_over_n1_tokens_per_s"]
            ratio = f"{r['median']} ({', '.join(map(str, r['pairs']))})" if n == 2 else ""
            triton = statistics.median(r["triton_us_per_token"] for r in s["runs"])
            client = statistics.median(r["client_us_per_token"] for r in s["runs"])
            lines.append(f"| {iv['stream_interval']} | {n} | {s['tokens_per_s']:.0f} | {s['us_per_token']:.0f} | "
                         f"{s['frontend_cores']} | {ratio} | {triton:.0f} | {client:.0f} | "
                         f"{min(loads):.1f}-{max(loads):.1f} | {min(foreign):.2f}-{max(foreign):.2f} |")
    lines += ["", f"Projection for {H100_SOURCE}; one process carries at most 1e6 / (us per token, N=1) tok/s on "
              f"one core of this machine, and is planned at {int(HEADROOM * 100)}% of that:", "",
              "| stream_interval | per-process ceiling (tok/s) | N for 27.6k tok/s | N for 22.0k tok/s |",
              "|---|---|---|---|"]
    for iv in result["intervals"]:
        p = iv["projected_api_servers"]
        k = f"n_at_{int(HEADROOM * 100)}pct"
        lines.append(f"| {iv['stream_interval']} | {iv['per_process_ceiling_tokens_per_s']:.0f} | "
                     f"{p['isl128_osl128'][k]} ({p['isl128_osl128']['n_at_full_core']} at 100%) | "
                     f"{p['isl128_osl2048'][k]} ({p['isl128_osl2048']['n_at_full_core']} at 100%) |")
    lines += ["", "Read with care: this machine has 2 cores shared with other jobs. The engine costs nothing, but "
              "Triton's Python backend does not: each response it sends costs it more CPU than the frontend spends "
              "on it (the Triton column), so here the two cores (Triton + client + frontend + other programs) run "
              "out before one frontend process is busy (frontend cores well below 1), and N=2 cannot raise "
              "tokens/s: the ratio is that of a saturated machine, not of the frontend. On a GPU host TensorRT-LLM's "
              "C++ backend sends the responses and the frontend is what runs out. The figure that transfers is CPU "
              "per token (a GPU host's cores may be faster or slower than these); with N=2 it also includes "
              "prometheus multiprocess mode (file-backed counters) and two processes sharing the cores. "
              "'Other programs' is the machine's busy time less that of the processes measured, floored at 0 "
              "(the two are sampled apart, so it is approximate).", ""]
    (out_dir / "frontend-scaling.md").write_text("\n".join(lines))
    plot(result, out_dir / "frontend-scaling.png")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.35
    for i, n in enumerate((1, 2)):
        xs = [j + (i - 0.5) * width for j in range(len(result["intervals"]))]
        ax1.bar(xs, [iv[f"n{n}"]["tokens_per_s"] for iv in result["intervals"]], width, label=f"N={n}")
        ax2.bar(xs, [iv[f"n{n}"]["us_per_token"] for iv in result["intervals"]], width, label=f"N={n}")
    labels = [f"stream_interval {iv['stream_interval']}" for iv in result["intervals"]]
    for ax, title in ((ax1, "streamed tokens/s (median)"), (ax2, "frontend CPU us per token (median)")):
        ax.set_xticks(range(len(labels)), labels)
        ax.set_title(title)
        ax.legend()
    fig.suptitle("trtpipe serve --api-servers N, zero-cost engine, 2 shared cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=96)
    ap.add_argument("--concurrency", type=int, default=48)
    ap.add_argument("--max-tokens", type=int, default=256)
    ap.add_argument("--step-ms", type=float, default=5.0, help="the zero-cost engine's step: 1 token per request")
    ap.add_argument("--repeat", type=int, default=3, help="N=1/N=2 pairs per stream interval")
    ap.add_argument("--stream-intervals", default="1,4")
    ap.add_argument("--out-dir", type=Path, default=HERE / "results")
    ap.add_argument("--report-from", type=Path, help="only rewrite the markdown and plot from this results JSON")
    args = ap.parse_args()
    if args.report_from:
        write_report(json.loads(args.report_from.read_text()), args.out_dir)
        return 0
    home = Path(tempfile.mkdtemp(prefix="trtpipe-scaling-"))
    os.environ["TRTPIPE_HOME"] = str(home)
    result = {"command": "python -m bench.frontend_scaling " + " ".join(sys.argv[1:]),
              "machine": f"{os.cpu_count()} cores (shared), load average at start {os.getloadavg()[0]:.2f}",
              "requests": args.requests, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
              "step_ms": args.step_ms, "repeat": args.repeat, "h100_source": H100_SOURCE, "headroom": HEADROOM,
              "intervals": [one_interval(int(si), home, args) for si in args.stream_intervals.split(",")]}
    write_report(result, args.out_dir)
    print(json.dumps({iv["stream_interval"]: {"n1": iv["n1"]["tokens_per_s"], "n2": iv["n2"]["tokens_per_s"],
                                              "ratio": iv["ratio_n2_over_n1_tokens_per_s"]["median"],
                                              "us_per_token_n1": iv["n1"]["us_per_token"]}
                      for iv in result["intervals"]}, indent=2))
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
