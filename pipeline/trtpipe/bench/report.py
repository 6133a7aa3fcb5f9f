"""A run's report directory: results.json (everything), report.md (the Performance Baseline), PNG plots.

Each file is written to a temporary name and renamed into place, so a crash never leaves a truncated
results.json for `bench compare` to trip over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from trtpipe.bench.errors import BenchError
from trtpipe.bench.results import BenchResult, PointResult, Stats
from trtpipe.bench.scrape import key_metrics

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"


def write_report(result: BenchResult, out_dir: str | Path, *, with_plots: bool = True) -> list[Path]:
    """Writes results.json, report.md and (unless `with_plots` is False) the plots; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [_write_text(out_dir / RESULTS_FILE, json.dumps(result.to_json(), indent=1, allow_nan=False)),
             _write_text(out_dir / REPORT_FILE, render_markdown(result, with_plots=with_plots))]
    if with_plots:
        from trtpipe.bench.plots import write_plots  # matplotlib is heavy; import only when plotting

        paths += write_plots(result, out_dir)
    return paths


def load_result(path: str | Path) -> BenchResult:
    """Reads a results.json, or the one inside a report directory."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    try:
        return BenchResult.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        raise BenchError("no results.json here", where=str(path),
                         fix="pass a results.json or the report directory `bench run` wrote") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"not a bench results file ({type(exc).__name__}: {exc})", where=str(path),
                         fix="pass a results.json written by `trtpipe bench run`") from None


def best_point(result: BenchResult) -> PointResult | None:
    """The highest load level whose requests met the SLOs (None without SLOs or when none did)."""
    meeting = [p for p in result.points if p.summary.meets_slo]
    return max(meeting, key=lambda p: p.point.value) if meeting else None


def render_markdown(result: BenchResult, *, with_plots: bool = True) -> str:
    config = result.config
    title = f"Performance Baseline - {config['label']}" if config.get("label") else "Performance Baseline"
    lines = [f"# {title}", ""]
    streaming = "streaming" if config["stream"] else "no streaming"
    lines += [f"- Endpoint: `{config['url']}` ({config['endpoint']}, {streaming})",
              f"- Model: `{result.model}`",
              f"- Started: {result.started_at} (trtpipe {result.trtpipe_version})",
              f"- Workload: {config['num_prompts']} prompts per point, input {config['input_len']} tokens"
              f"{_prefix_note(config)}, output {config['output_len']} tokens"
              f"{' (ignore_eos)' if config['ignore_eos'] else ''}, seed {config['seed']}",
              f"- Prompt lengths: {result.prompt_lengths}",
              f"- Load: {_load_note(config)}"]
    if config.get("duration_s"):
        lines.append(f"- Duration cap: {config['duration_s']:g} s per point (no new requests after it)")
    lines += ["", "## Results", "", *_results_table(result.points), ""]
    lines += _slo_section(result)
    lines += _server_metrics_section(result.points)
    lines += _errors_section(result.points)
    if with_plots:
        lines += ["## Plots", "", "![TTFT](ttft.png)", "", "![ITL](itl.png)", "", "![Throughput](throughput.png)", ""]
    lines += ["Metrics follow `vllm bench serve`: TTFT = send to first content token (includes server queueing); "
              "ITL = gaps between content chunks, pooled; TPOT = (E2E - TTFT) / (output tokens - 1); "
              "times in ms, percentiles by numpy linear interpolation.", ""]
    return "\n".join(lines)


def _results_table(points: list[PointResult]) -> list[str]:
    # Open loop only: time a request waited on the client before being sent, kept out of TTFT.
    has_queue = bool(points) and points[0].point.mode == "rate"
    header = ("| Load | Requests | OK | Errors | TTFT p50 | TTFT p95 | TTFT p99 | ITL p50 | ITL p99 | TPOT mean "
              "| E2E p50 | E2E p99 | Output tok/s | Req/s | Goodput req/s |")
    header += " Client queue p99 |" if has_queue else ""
    rows = [header, "|" + "---|" * (header.count("|") - 1)]
    for p in points:
        s = p.summary
        rows.append(f"| {p.point.label} | {s.num_requests} | {s.completed} | {s.failed} "
                    f"| {_ms(s.ttft, 'p50')} | {_ms(s.ttft, 'p95')} | {_ms(s.ttft, 'p99')} "
                    f"| {_ms(s.itl, 'p50')} | {_ms(s.itl, 'p99')} | {_ms(s.tpot, 'mean')} "
                    f"| {_ms(s.e2el, 'p50')} | {_ms(s.e2el, 'p99')} | {s.output_throughput:.1f} "
                    f"| {s.request_throughput:.2f} | {'-' if s.goodput is None else f'{s.goodput:.2f}'} |"
                    + (f" {_ms(s.queue, 'p99')} |" if has_queue else ""))
    return rows


def _slo_section(result: BenchResult) -> list[str]:
    slo = result.config.get("slo") or {}
    if not slo:
        return ["No SLOs given (`--slo ttft=200ms,itl=50ms,e2e=5s`), so no goodput.", ""]
    limits = ", ".join(f"{k.removesuffix('_ms')} <= {v:g} ms" for k, v in slo.items())
    share = f"{result.config['slo_attainment']:.0%}"
    best = best_point(result)
    kind = "concurrency" if result.points and result.points[0].point.mode == "concurrency" else "request rate"
    verdict = (f"**Highest {kind} meeting the SLOs: {best.point.label}**" if best
               else f"**No {kind} in this sweep met the SLOs.**")
    return [f"SLOs: {limits}; a point meets them when at least {share} of its requests do.", "", verdict, ""]


def _server_metrics_section(points: list[PointResult]) -> list[str]:
    lines = []
    for p in points:
        metrics = p.server_metrics
        if metrics is None:
            continue
        if "error" in metrics:
            lines.append(f"- {p.point.label}: {metrics['error']}")
            continue
        before, after = metrics["before"], metrics["after"]
        for name, value in sorted(key_metrics(after).items()):
            lines.append(f"- {p.point.label}: `{name}` {before.get(name, float('nan')):g} -> {value:g}")
    return ["## Server metrics (before -> after each point)", "", *lines, ""] if lines else []


def _errors_section(points: list[PointResult]) -> list[str]:
    lines = [f"- {p.point.label}: {count} x {message}" for p in points for message, count in p.summary.errors.items()]
    return ["## Errors", "", *lines, ""] if lines else []


def _load_note(config: dict) -> str:
    labels = ", ".join(point["label"] for point in config["sweep"])
    if config["sweep"] and config["sweep"][0]["mode"] == "rate":
        cap = f", at most {config['max_concurrency']} in flight" if config.get("max_concurrency") else ""
        return f"open loop, Poisson arrivals ({labels}){cap}"
    return f"closed loop ({labels})"


def _prefix_note(config: dict) -> str:
    n = config.get("shared_prefix_len") or 0
    return f" after a shared prefix of {n} tokens" if n else ""


def _ms(stats: Stats | None, field: str) -> str:
    return "-" if stats is None else f"{getattr(stats, field):.1f}"


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
