"""`/health/live` latency while 4 MB prompts arrive: this tree's frontend against a baseline's, in one run.

One real Triton on tiny-llama; two `trtpipe serve --triton ...` frontends in front of it, one from this tree and
one from `--baseline-src` (a `pipeline/` folder of another commit: `git archive REV pipeline | tar -x -C DIR`),
each a real process. For each frontend in turn (alternating over --rounds): --senders clients post big prompts
back to back for --seconds while one client asks `/health/live` every 20 ms; the health latencies give
p50/p99/max per frontend and load. Also how each big request ended (status and code). Two loads:
- `4MB`: 4 MB chat prompts (this tree refuses them on their raw length, before tokenizing);
- `16 at the limit`: /v1/completions with 16 prompts each as long as the raw-length check lets through
  (tiny-llama's max_input_len x its longest token), so that this tree tokenizes them all, in its worker threads.

    git archive 10b01af pipeline | tar -x -C /tmp/base
    .venv/bin/python -m bench.health_under_big_prompts --baseline-src /tmp/base/pipeline --baseline-name 10b01af

Writes bench/results/health-under-big-prompts.{json,md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.frontend_scaling import free_port

PROMPT_CHARS = 4_000_000  # under the frontend's default 4 MiB body limit, as the prompts were
LOADS = ("4MB", "16 at the limit")


def start_frontend(repo: Path, grpc_url: str, home: Path, pythonpath: str | None, name: str):
    port = free_port()
    env = {**os.environ, "TRTPIPE_HOME": str(home)}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    log = open(home / f"serve-{name}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "trtpipe", "serve", "--repo", str(repo), "--port", str(port),
                                "--triton", grpc_url, "--api-servers", "1"], stdout=log, stderr=subprocess.STDOUT,
                               env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"frontend {name} did not become ready; see {home / f'serve-{name}.log'}")


def request_body(load: str, limit_chars: int) -> tuple[str, bytes]:
    if load == "4MB":
        return "/v1/chat/completions", json.dumps({"model": "tiny-llama", "max_tokens": 4, "messages": [
            {"role": "user", "content": "x " * (PROMPT_CHARS // 2)}]}).encode()
    text = ("lorem ipsum dolor " * (limit_chars // 18 + 1))[:limit_chars]
    return "/v1/completions", json.dumps({"model": "tiny-llama", "max_tokens": 4, "prompt": [text] * 16}).encode()


async def one_round(url: str, seconds: float, senders: int, route: str, body: bytes) -> dict:
    end = time.monotonic() + seconds
    outcomes: dict[str, int] = {}
    latencies: list[float] = []

    async def sender(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            r = await client.post(url + route, content=body,
                                  headers={"content-type": "application/json"})
            code = r.json().get("error", {}).get("code") if r.status_code != 200 else "ok"
            key = f"{r.status_code} {code}"
            outcomes[key] = outcomes.get(key, 0) + 1

    async def prober(client: httpx.AsyncClient) -> None:
        while time.monotonic() < end:
            t = time.perf_counter()
            await client.get(url + "/health/live")
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.02)

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(prober(client), *(sender(client) for _ in range(senders)))
    return {"latencies_ms": [1e3 * x for x in latencies], "outcomes": outcomes}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summarize(rounds: list[dict]) -> dict:
    lat = [x for r in rounds for x in r["latencies_ms"]]
    outcomes: dict[str, int] = {}
    for r in rounds:
        for k, v in r["outcomes"].items():
            outcomes[k] = outcomes.get(k, 0) + v
    return {"probes": len(lat), "p50_ms": percentile(lat, 0.5), "p99_ms": percentile(lat, 0.99),
            "max_ms": max(lat), "big_requests": outcomes}


def write_report(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = ["# /health/live while big prompts arrive", "",
             f"Command: `{result['command']}`", "",
             f"{result['senders']} senders posting back to back, one /health/live probe every 20 ms, "
             f"{result['rounds']} alternating rounds of {result['seconds']:g} s per frontend; "
             f"load average at the end {result['loadavg']}.", "",
             f"`16 at the limit`: 16 prompts of {result['limit_chars']} characters each.", "",
             "| load | frontend | probes | p50 ms | p99 ms | max ms | how the big requests ended |",
             "|---|---|---|---|---|---|---|"]
    for key, s in result["frontends"].items():
        load, name = key.split(" | ")
        ends = ", ".join(f"{k}: {v}" for k, v in sorted(s["big_requests"].items()))
        lines.append(f"| {load} | {name} | {s['probes']} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | {s['max_ms']:.1f} "
                     f"| {ends} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(result, out.with_suffix(".png"))


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = list(result["frontends"])
    for i, name in enumerate(names):
        lat = sorted(result["latencies"][name])
        ax.plot(lat, [(k + 1) / len(lat) for k in range(len(lat))], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("/health/live latency (ms, log scale)")
    ax.set_ylabel("fraction of probes")
    ax.axvline(50, color="grey", linestyle=":", label="50 ms goal")
    ax.set_title("/health/live while big prompts arrive")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-src", required=True, help="a pipeline/ folder of the commit to compare with")
    parser.add_argument("--baseline-name", default="baseline")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results/health-under-big-prompts"))
    args = parser.parse_args()

    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    home = Path(tempfile.mkdtemp(prefix="trtpipe-health-"))
    os.environ["TRTPIPE_HOME"] = str(home)
    repo = home / "model_repository"
    print("building tiny-llama ...", flush=True)
    build(load_config("tiny-llama"), repo)
    triton = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_path=home / "triton.log",
                          exit_timeout_s=2)
    triton.start()
    from trtpipe.serve.openai.served_models import ModelRegistry

    served = ModelRegistry(repo).get("tiny-llama")
    limit_chars = served.spec.max_input_len * served.text.max_token_chars
    names = {"this tree": None, args.baseline_name: str(Path(args.baseline_src).resolve())}
    frontends = {name: start_frontend(repo, triton.grpc_url, home, path, f"f{i}")
                 for i, (name, path) in enumerate(names.items())}
    rounds: dict[str, list[dict]] = {f"{load} | {name}": [] for load in LOADS for name in names}
    try:
        for r in range(args.rounds):
            for load in LOADS:
                route, body = request_body(load, limit_chars)
                for name in (list(names) if r % 2 == 0 else list(reversed(names))):
                    print(f"round {r + 1}/{args.rounds}: {load}, {name} ...", flush=True)
                    rounds[f"{load} | {name}"].append(
                        asyncio.run(one_round(frontends[name][1], args.seconds, args.senders, route, body)))
    finally:
        for process, _ in frontends.values():
            process.terminate()
            process.wait(30)
        triton.stop()
    result = {"command": " ".join(["python -m bench.health_under_big_prompts", *sys.argv[1:]]),
              "rounds": args.rounds, "seconds": args.seconds, "senders": args.senders, "limit_chars": limit_chars,
              "loadavg": [round(x, 2) for x in os.getloadavg()],
              "frontends": {name: summarize(rs) for name, rs in rounds.items()},
              "latencies": {name: [x for r in rs for x in r["latencies_ms"]] for name, rs in rounds.items()}}
    write_report(result, args.out)
    for name, s in result["frontends"].items():
        print(f"{name}: p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms; {s['big_requests']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
