"""Frontend overhead baseline: the same load through the OpenAI frontend and straight to Triton over gRPC.

Builds tiny-llama into a throwaway TRTPIPE_HOME, starts one real Triton and the frontend (uvicorn running
create_app, as tests/conftest.py does, but in its own process so that it never shares a GIL with the load
generator), then for each concurrency runs frontend and direct-gRPC points back to back, in ABBA order
(F D, D F; the next concurrency D F, F D) so that drift on a shared machine falls on both sides alike.
The rounds of one side are pooled into one sweep point. Writes

    bench/results/tiny-llama-frontend/            results.json, report.md, ttft.png, itl.png, throughput.png
    bench/results/tiny-llama-grpc-direct/         the same for the direct runs
    bench/results/tiny-llama-frontend-vs-grpc.md  ratios per concurrency, and .png: both runs on shared axes

    .venv/bin/python -m bench.baseline                    # concurrencies 1,4,16,64: about 2 minutes
    .venv/bin/python -m bench.baseline --concurrency 1,4 --rounds 1 --out /tmp/baseline

Both sides send the same workload: completions-style prompts of input-len tokens (the bench's synthetic
prompts, encoded with the tokenizer.json the frontend uses), greedy, ignore_eos with min_tokens = output-len.
Every round draws prompts of its own (KV-cache reuse is on: a prompt sent twice would be a cache hit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import tritonclient.grpc.aio as grpcclient

import trtpipe
from trtpipe.bench.client import request_body, resolve_model, send_request
from trtpipe.bench.config import BenchConfig, parse_int_list
from trtpipe.bench.load import run_point
from trtpipe.bench.metrics import summarize
from trtpipe.bench.prompts import TokenCounter, make_prompts
from trtpipe.bench.results import BenchResult, PointResult
from trtpipe.bench.ttft_pairs import PAIRS, LeanHttp, PairedTtft, lean_grpc_ttft, paired_ttft
from trtpipe.serve.process.launcher import wait_http_ok

from bench.grpc_direct import (direct_prompts, direct_result, engine_call, run_direct_point, send_engine_request,
                               utc_now)

MODEL = "tiny-llama"
ENGINE = f"{MODEL}-engine"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
LOOPBACK = ["--grpc-address=127.0.0.1", "--http-address=127.0.0.1", "--metrics-address=127.0.0.1"]
RUN_LIMIT_S = 420  # no new sweep point after this; every request is bounded by the request timeout
REQUEST_TIMEOUT_S = 120.0


def num_prompts_for(concurrency: int) -> int:
    """Requests per round and side; with two rounds each side sends max(32, 4 x concurrency) per point."""
    return max(16, 2 * concurrency)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------------
# The frontend process


def serve_frontend(repo: str, grpc_url: str, port: int) -> None:
    """The child process: the frontend as tests/conftest.py builds it, under uvicorn."""
    import uvicorn

    from trtpipe.serve.api.app import FrontendSettings, create_app

    app = create_app(FrontendSettings(repo=Path(repo), triton_grpc_url=grpc_url))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Frontend:
    """The frontend in a child process on a free port; SIGTERM stops it (uvicorn's graceful shutdown)."""

    def __init__(self, repo: Path, grpc_url: str, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log_path
        self._argv = [sys.executable, "-m", "bench.baseline", "--serve-frontend", str(repo), grpc_url, str(self.port)]
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self._argv, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=_die_with_parent)
        outcome = wait_http_ok(f"http://127.0.0.1:{self.port}/health/ready", timeout_s, self.process)
        if outcome == "ready":
            return
        if outcome == "exited":
            raise RuntimeError(f"the frontend exited with code {self.process.returncode} during start-up")
        raise RuntimeError(f"the frontend was not ready after {timeout_s:.0f} s; its log ends:\n{_tail(self.log_path)}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# ---------------------------------------------------------------------------------------------------
# The interleaved sweep


class LabelledProgress:
    """A ProgressSink that prefixes each sweep point's label with the side and round being measured."""

    def __init__(self, sink, prefix: str):
        self.sink, self.prefix = sink, prefix

    def start_point(self, label: str, num_requests: int) -> None:
        self.sink.start_point(f"{self.prefix} {label}", num_requests)

    def request_done(self, record) -> None:
        self.sink.request_done(record)

    def end_point(self, result) -> None:
        self.sink.end_point(result)


@dataclass
class Sides:
    frontend: BenchResult
    direct: BenchResult
    orders: dict[str, str]  # point label -> e.g. "FD DF"
    load_avgs: dict[str, float]  # point label -> the machine's 1-minute load average when it started
    client_cpu_s: dict[str, tuple[float, float]]  # point label -> this process's CPU seconds (frontend, direct)
    ttft_c1: PairedTtft | None = None  # per-request interleaved TTFT at concurrency 1, four clients


def pool_rounds(parts: list[PointResult], config: BenchConfig) -> PointResult:
    """Rounds of one side at one load level -> one point: records pooled, durations added, re-summarized."""
    records, offset = [], 0
    for part in parts:
        for r in part.requests:
            r.request_id += offset
            records.append(r)
        offset += len(part.requests)
    duration_s = sum(p.summary.duration_s for p in parts)
    return PointResult(point=parts[0].point, summary=summarize(records, duration_s, config.slo, config.slo_attainment),
                       requests=records, started_at=parts[0].started_at)


async def ttft_at_c1(http, grpc, config: BenchConfig, model: str, counter: TokenCounter, grpc_url: str,
                    iterations: int) -> PairedTtft:
    """TTFT at concurrency 1 with every request of each client kind interleaved (trtpipe.bench.ttft_pairs)."""
    import grpc as grpc_core

    from trtpipe.serve.engine_client import stream_infer_callable

    prompts = make_prompts(4 * iterations, config.input_len, counter, seed=config.seed + 200, point_index=0)
    lean_http = LeanHttp(config.url)
    channel = grpc_core.aio.insecure_channel(grpc_url)
    stream_infer = stream_infer_callable(channel)

    def checked(record) -> float:
        if record.error or not record.chunk_times_s:
            raise RuntimeError(f"a TTFT request failed: {record.error or 'no tokens'}")
        return record.chunk_times_s[0] - record.start_s

    async def via_httpx(i: int) -> float:
        return checked(await send_request(http, config, model, prompts[4 * i], counter, request_id=i,
                                          scheduled_s=0.0, t0=0.0))

    async def via_tritonclient(i: int) -> float:
        call = engine_call(counter.encode(prompts[4 * i + 1].text), config)
        return checked(await send_engine_request(grpc, ENGINE, call, request_id=i, scheduled_s=0.0, t0=0.0,
                                                 timeout_s=config.request_timeout_s))

    async def via_lean_http(i: int) -> float:
        body = request_body(config, model, prompts[4 * i + 2].text)
        return await lean_http.stream_ttft("/completions", body)

    async def via_lean_grpc(i: int) -> float:
        call = engine_call(counter.encode(prompts[4 * i + 3].text), config)
        return await lean_grpc_ttft(stream_infer, ENGINE, call)

    try:
        return await paired_ttft({"httpx": via_httpx, "tritonclient": via_tritonclient,
                                  "lean-http": via_lean_http, "lean-grpc": via_lean_grpc}, iterations, config.seed)
    finally:
        await lean_http.close()
        await channel.close()


async def interleaved_sweep(config: BenchConfig, grpc_url: str, rounds: int, progress,
                            ttft_iterations: int = 0) -> Sides:
    counter = TokenCounter(config.tokenizer_path)
    started_at = utc_now()
    points = config.sweep_points
    grpc = grpcclient.InferenceServerClient(grpc_url)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    timeout = httpx.Timeout(config.request_timeout_s, connect=10.0)
    front_points, direct_points, orders, load_avgs, client_cpu_s = [], [], {}, {}, {}
    try:
        async with httpx.AsyncClient(limits=limits, timeout=timeout, trust_env=False) as http:
            model = await resolve_model(http, config)
            await _warm_up(http, grpc, config, model, counter)
            deadline = time.monotonic() + RUN_LIMIT_S
            for index, point in enumerate(points):
                if time.monotonic() > deadline:
                    break
                n = num_prompts_for(int(point.value))
                point_config = BenchConfig(**{**_fields(config), "num_prompts": n})
                parts: dict[str, list[PointResult]] = {"F": [], "D": []}
                load_avgs[point.label] = os.getloadavg()[0]
                cpu_s = {"F": 0.0, "D": 0.0}  # the load generator's own CPU time: a cost on the shared cores
                order = []
                for round_index in range(rounds):
                    prompt_index = index + round_index * len(points)  # fresh prompts every round
                    tag = f"({round_index + 1}/{rounds})"

                    async def front(prompt_index=prompt_index, tag=tag) -> None:
                        prompts = make_prompts(n, config.input_len, counter, seed=config.seed,
                                               point_index=prompt_index)
                        parts["F"].append(await run_point(http, point_config, model, point, prompts, counter,
                                                          progress=LabelledProgress(progress, f"frontend {tag}")))

                    async def direct(prompt_index=prompt_index, tag=tag) -> None:
                        prompts = direct_prompts(config, counter, prompt_index, num_prompts=n)
                        parts["D"].append(await run_direct_point(grpc, point_config, ENGINE, point, prompts,
                                                                 progress=LabelledProgress(progress, f"grpc {tag}")))

                    sides = (front, direct) if (index + round_index) % 2 == 0 else (direct, front)
                    order.append("FD" if sides[0] is front else "DF")
                    for side in sides:
                        cpu_before = time.process_time()
                        await side()
                        cpu_s["F" if side is front else "D"] += time.process_time() - cpu_before
                front_points.append(pool_rounds(parts["F"], point_config))
                direct_points.append(pool_rounds(parts["D"], point_config))
                orders[point.label] = " ".join(order)
                client_cpu_s[point.label] = (cpu_s["F"], cpu_s["D"])
            ttft_c1 = None
            if ttft_iterations:
                ttft_c1 = await ttft_at_c1(http, grpc, config, model, counter, grpc_url, ttft_iterations)
    finally:
        await grpc.close()
    note = {"num_prompts": f"{rounds} rounds x max(16, 2 x concurrency)"}
    frontend = BenchResult(config={**config.to_json(), "model": model, **note}, model=model, started_at=started_at,
                           prompt_lengths=counter.describe(), points=front_points,
                           trtpipe_version=trtpipe.__version__)
    direct = direct_result(config, grpc_url, MODEL, direct_points, started_at, counter,
                           label=f"{MODEL} direct to Triton gRPC")
    direct.config.update(note)
    return Sides(frontend, direct, orders, load_avgs, client_cpu_s, ttft_c1)



async def _warm_up(http, grpc, config: BenchConfig, model: str, counter: TokenCounter) -> None:
    """Unmeasured requests with prompts of their own: a few through the frontend (connections, detokenizer),
    then the largest concurrency straight to the engine, so that every KV-cache page and batch size has been
    touched once and the first measured point at a new concurrency does not pay for it."""
    num = max(4, *(int(p.value) for p in config.sweep_points))
    prompts = make_prompts(num, config.input_len, counter, seed=config.seed + 100, point_index=0)
    t0 = time.perf_counter()
    front = [send_request(http, config, model, p, counter, request_id=i, scheduled_s=0.0, t0=t0)
             for i, p in enumerate(prompts[:4])]
    direct = [send_engine_request(grpc, ENGINE, engine_call(counter.encode(p.text), config), request_id=i,
                                  scheduled_s=0.0, t0=t0, timeout_s=config.request_timeout_s)
              for i, p in enumerate(prompts)]
    for batch in (front, direct):
        for record in await asyncio.gather(*batch):
            if record.error:
                raise RuntimeError(f"warm-up request failed: {record.error}")


def _fields(config: BenchConfig) -> dict:
    from dataclasses import fields

    return {f.name: getattr(config, f.name) for f in fields(config)}


# ---------------------------------------------------------------------------------------------------
# The comparison: a table of ratios and one plot with both runs

COLUMNS = ("Concurrency", "TTFT p50 front / direct (ms)", "TTFT p50 added (ms)", "TTFT p99 front / direct (ms)",
           "ITL p50 front / direct (ms)", "ITL p50 ratio", "TPOT mean front / direct (ms)",
           "Output tok/s front / direct", "Tok/s ratio", "Failed front / direct", "Client CPU s front / direct",
           "Order", "Load avg")


def comparison_rows(sides: Sides) -> list[dict]:
    """Per concurrency present in both runs: (frontend, direct) pairs of the compared numbers."""
    by_label = {p.point.label: p for p in sides.direct.points}
    rows = []
    for f in sides.frontend.points:
        d = by_label.get(f.point.label)
        if d is None:
            continue
        fs, ds = f.summary, d.summary
        rows.append({
            "concurrency": int(f.point.value),
            "ttft_p50": (_get(fs.ttft, "p50"), _get(ds.ttft, "p50")),
            "ttft_p99": (_get(fs.ttft, "p99"), _get(ds.ttft, "p99")),
            "itl_p50": (_get(fs.itl, "p50"), _get(ds.itl, "p50")),
            "tpot_mean": (_get(fs.tpot, "mean"), _get(ds.tpot, "mean")),
            "tok_s": (fs.output_throughput, ds.output_throughput),
            "failed": (fs.failed, ds.failed),
            "client_cpu_s": sides.client_cpu_s.get(f.point.label, (None, None)),
            "order": sides.orders.get(f.point.label, "-"),
            "load_avg": sides.load_avgs.get(f.point.label),
        })
    return rows


def _cells(r: dict) -> tuple[str, ...]:
    (tf, td), (itf, itd), (sf, sd) = r["ttft_p50"], r["itl_p50"], r["tok_s"]

    def pair(key: str, spec: str = ".1f") -> str:
        return " / ".join(_f(v, spec) for v in r[key])

    return (str(r["concurrency"]), pair("ttft_p50"), _f(_sub(tf, td), "+.1f"), pair("ttft_p99"),
            pair("itl_p50", ".2f"), _f(_div(itf, itd), ".2f"), pair("tpot_mean", ".2f"), pair("tok_s", ".0f"),
            _f(_div(sf, sd), ".2f"), pair("failed", "d"), pair("client_cpu_s"), r["order"], _f(r["load_avg"], ".1f"))


def render_comparison(frontend: BenchResult, direct: BenchResult, rows: list[dict], frontend_dir: str,
                      direct_dir: str, ttft_c1: PairedTtft | None = None) -> str:
    cfg = frontend.config
    lines = [f"# Frontend vs direct gRPC - {MODEL}", "",
             f"- Frontend: `{cfg['url']}` (completions, streaming) -> [{frontend_dir}]({frontend_dir}/report.md)",
             f"- Direct: `{direct.config['url']}` (one tritonclient.grpc.aio stream per request) -> "
             f"[{direct_dir}]({direct_dir}/report.md)",
             f"- Workload: closed loop, {cfg['num_prompts']} requests per point and side, input "
             f"{cfg['input_len']} tokens, output {cfg['output_len']} tokens (ignore_eos, min_tokens), greedy",
             f"- Started {frontend.started_at} on {os.cpu_count()} CPUs. Order: the rounds at each concurrency "
             "(F = frontend, D = direct). Load avg: the 1-minute load average when the concurrency started; this run "
             "itself keeps about 3 processes busy (client, frontend, Triton). Client CPU s: CPU time of the load "
             "generator (this process) during the points, which competes for the same cores",
             "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    lines += ["", "Ratios are frontend / direct; added = frontend - direct. Clients, frontend and Triton share the "
              "machine's CPU cores, so the frontend's cost (HTTP, JSON, detokenization, the heavier HTTP client) "
              "also slows the engine. The frontend's text chunks often arrive in bursts (several SSE events per "
              "read, gaps of ~0.02 ms) and it holds back incomplete UTF-8, so its ITL p50 can even fall below the "
              "direct one; TPOT = (E2E - TTFT) / (tokens - 1) does not depend on chunking and is the fair "
              "per-token comparison.",
              "", f"![frontend vs direct]({MODEL}-frontend-vs-grpc.png)", ""]
    if ttft_c1 is not None:
        lines += render_ttft_c1(ttft_c1)
    return "\n".join(lines)


def render_ttft_c1(t: PairedTtft) -> list[str]:
    n = min(len(v) for v in t.samples.values())
    lines = ["## TTFT at concurrency 1, requests interleaved", "",
             f"{n} iterations; each sends one request with each client below, in a shuffled order, so that drift "
             "on the shared machine falls on all four alike (the table above compares whole points, run one "
             "after the other). Same workload as above; fresh prompts for every request.", "",
             "| Clients (frontend vs direct) | TTFT p50 frontend (ms) | TTFT p50 direct (ms) | Added: p50 - p50 (ms) "
             "| Added: median of paired differences (ms) |",
             "|---|---|---|---|---|"]
    for f, d in PAIRS:
        lines.append(f"| {f} vs {d} | {_f(t.p50_ms(f), '.2f')} | {_f(t.p50_ms(d), '.2f')} | "
                     f"{_f(t.added_ms(f, d), '+.2f')} | {_f(t.paired_added_ms(f, d), '+.2f')} |")
    client_gap = _sub(_sub(t.p50_ms("httpx"), t.p50_ms("lean-http")),
                      _sub(t.p50_ms("tritonclient"), t.p50_ms("lean-grpc")))
    lines += ["", "The clients do not cost the same: httpx (the bench's HTTP client) spends more of its own time per "
              "request than tritonclient.grpc.aio does, and that time counts as the frontend's in the first row. "
              f"Measured here: httpx over a minimal HTTP client, minus tritonclient over a bare gRPC call: "
              f"{_f(client_gap, '+.2f')} ms. The second row (a minimal HTTP/1.1 client on a kept-alive connection "
              "vs a bare grpc.aio call made exactly as the frontend makes it) is what the frontend itself adds, with "
              "as little client cost on either side as the protocols allow: the strict figure. The third row is the "
              "issue's own comparison (added TTFT at concurrency 1 <= 2 ms p50, against direct tritonclient gRPC), "
              "with the minimal HTTP client on the frontend's side so httpx's cost is not counted as the frontend's; "
              "tritonclient's own cost over a bare call counts on the direct side. Paired differences: "
              "frontend minus direct within one iteration (sent within a fraction of a second of each other), "
              "whose median is less sensitive to drift than the difference of the two medians.", ""]
    return lines


def write_comparison_plot(frontend: BenchResult, direct: BenchResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, tput) = plt.subplots(1, 2, figsize=(12, 4.5))
    for result, name, color in ((frontend, "frontend", "tab:blue"), (direct, "direct gRPC", "tab:orange")):
        points = sorted(result.points, key=lambda p: p.point.value)
        xs = [p.point.value for p in points]
        lat.plot(xs, [_get(p.summary.ttft, "p50", math.nan) for p in points], marker="o", color=color,
                 label=f"{name} p50")
        lat.plot(xs, [_get(p.summary.ttft, "p99", math.nan) for p in points], marker="^", linestyle="--",
                 color=color, label=f"{name} p99")
        tput.plot(xs, [p.summary.output_throughput for p in points], marker="o", color=color, label=name)
    lat.set_yscale("log")  # p50 at c=1 and p99 at c=64 are orders of magnitude apart
    values = sorted({p.point.value for p in frontend.points + direct.points})
    for ax, ylabel, title in ((lat, "TTFT (ms, log scale)", "TTFT vs concurrency"),
                              (tput, "output tokens/s", "Throughput vs concurrency")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(values, [f"{v:g}" for v in values])
        ax.minorticks_off()
        ax.set_xlabel("concurrency")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(f"{MODEL}: OpenAI frontend vs direct Triton gRPC")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _get(stats, field: str, default=None):
    return default if stats is None else getattr(stats, field)


def _sub(a, b):
    return None if a is None or b is None else a - b


def _div(a, b):
    return None if a is None or not b else a / b


def _f(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _tail(path: Path, num_lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-num_lines:])
    except OSError:
        return "(no log)"


# ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--concurrency", default="1,4,16,64")
    ap.add_argument("--rounds", type=int, default=2, help="ABBA rounds per concurrency and side")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the two report dirs and the comparison go")
    ap.add_argument("--ttft-iterations", type=int, default=40,
                    help="interleaved TTFT iterations at concurrency 1 (4 requests each); 0: skip")
    args = ap.parse_args(argv)

    from rich.console import Console

    from trtpipe.bench.report import write_report
    from trtpipe.bench.terminal import RichProgress, summary_table
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo import layout
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    console = Console(stderr=True)
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trtpipe-baseline-") as home:
        os.environ["TRTPIPE_HOME"] = home  # read by trtpipe at call time: the build cache and Triton's copy
        repo = Path(home) / "model_repository"
        with console.status(f"building {MODEL} into {home}"):
            build(load_config(MODEL), repo)
        version = layout.live_version(repo / ENGINE)
        tokenizer = repo / ENGINE / str(version) / "tokenizer" / "tokenizer.json"
        console.print(f"built {MODEL} version {version} ({time.monotonic() - t_start:.0f} s)")

        triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                              log_path=Path(home) / "tritonserver.log", exit_timeout_s=5, extra_args=LOOPBACK)
        frontend = Frontend(repo, triton.grpc_url, Path(home) / "frontend.log")
        try:
            with console.status("starting Triton and the frontend"):
                triton.start()
                frontend.start()
            console.print(f"Triton gRPC {triton.grpc_url}, frontend {frontend.url}")
            config = BenchConfig(url=frontend.url, model=MODEL, endpoint="completions",
                                 concurrencies=parse_int_list(args.concurrency), input_len=args.input_len,
                                 output_len=args.output_len, tokenizer_path=str(tokenizer), seed=args.seed,
                                 ignore_eos=True, request_timeout_s=REQUEST_TIMEOUT_S,
                                 label=f"{MODEL} via the frontend")
            with RichProgress() as progress:
                sides = asyncio.run(interleaved_sweep(config, triton.grpc_url, args.rounds, progress,
                                                      args.ttft_iterations))
        finally:
            with console.status("stopping the frontend and Triton"):
                frontend.stop()
                triton.stop()
            codes = {"frontend": frontend.process and frontend.process.returncode,
                     "Triton": triton.process and triton.process.returncode}
            console.print("stopped: " + ", ".join(f"{name} exit {code}" for name, code in codes.items()))
            for name, log in (("Triton", triton.log_path), ("frontend", frontend.log_path)):
                # SIGTERM is the frontend's normal end (-15); anything else is worth the log's tail.
                if codes[name] not in (0, -signal.SIGTERM, None):
                    console.print(f"--- last lines of the {name} log ---\n{_tail(log)}", markup=False)

    # The tokenizer lived in the throwaway home: record where it came from, not a dead path.
    for side in (sides.frontend, sides.direct):
        side.config["tokenizer_path"] = side.config["tokenizer_path"].replace(home, "$TRTPIPE_HOME")
        side.prompt_lengths = side.prompt_lengths.replace(home, "$TRTPIPE_HOME")
    out = args.out
    frontend_dir, direct_dir = out / f"{MODEL}-frontend", out / f"{MODEL}-grpc-direct"
    write_report(sides.frontend, frontend_dir)
    write_report(sides.direct, direct_dir)
    write_comparison_plot(sides.frontend, sides.direct, out / f"{MODEL}-frontend-vs-grpc.png")
    md = out / f"{MODEL}-frontend-vs-grpc.md"
    rows = comparison_rows(sides)
    md.write_text(render_comparison(sides.frontend, sides.direct, rows, frontend_dir.name, direct_dir.name,
                                    sides.ttft_c1))
    if sides.ttft_c1 is not None:
        (out / f"{MODEL}-ttft-c1.json").write_text(json.dumps(sides.ttft_c1.to_json(), indent=2) + "\n")

    Console().print(summary_table(sides.frontend), summary_table(sides.direct))
    print(md.read_text())
    console.print(f"total {time.monotonic() - t_start:.0f} s; reports in {out}")
    failed = sum(p.summary.failed for side in (sides.frontend, sides.direct) for p in side.points)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--serve-frontend":
        serve_frontend(*sys.argv[2:4], int(sys.argv[4]))
    else:
        sys.exit(main())
