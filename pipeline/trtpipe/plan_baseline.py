"""The Performance Baseline filled from a real `trtpipe bench run` report (`trtpipe plan --baseline BENCH`).

Every number is the bench report's: per load point TTFT p50/p95, ITL p50/p95, output tokens/s and requests/s
(bench/results.py, measured at the client as `vllm bench serve` does), and from the server metrics the bench
scraped after each point (`--metrics-url`, the frontend's /metrics or Triton's): the KV-cache utilisation
(`vllm:kv_cache_usage_perc`, or derived the same way from the engine's own block gauges when Triton was scraped)
and, on a GPU, Triton's `nv_gpu_utilization`. Both are snapshots taken after the point's requests finished, not
averages under load; the table says so. The maximum
concurrency is the highest load that met the run's SLOs, or without SLOs the highest load that completed every
request; the document says which.
"""

from __future__ import annotations

from trtpipe.bench.report import best_point
from trtpipe.bench.results import BenchResult, PointResult

KV_USAGE = "vllm:kv_cache_usage_perc"
GPU_UTILIZATION = "nv_gpu_utilization"


def _ms(stats, field: str) -> str:
    return "-" if stats is None else f"{getattr(stats, field):.1f} ms"


def _after(point: PointResult, name: str) -> float | None:
    """The largest value of series `name` (any labels) the bench scraped after the point."""
    metrics = point.server_metrics or {}
    values = [v for series, v in (metrics.get("after") or {}).items() if series.split("{", 1)[0] == name]
    return max(values) if values else None


def _kv_after(point: PointResult) -> float | None:
    """vllm:kv_cache_usage_perc after the point, else the same derived from the engine's block gauges."""
    direct = _after(point, KV_USAGE)
    if direct is not None:
        return direct
    from trtpipe.serve.api.triton_metrics import kv_usage, mirror_families

    after = (point.server_metrics or {}).get("after") or {}
    usage = kv_usage(mirror_families("".join(f"{series} {value}\n" for series, value in after.items())))
    return max(usage.values()) if usage else None


def _percent(value: float | None, scale: float = 1.0) -> str:
    return "not scraped" if value is None else f"{value * scale:.0f} %"


def max_load(result: BenchResult) -> tuple[PointResult | None, str]:
    """The highest load point that met the SLOs, else (without SLOs) the highest that completed every request."""
    if result.config.get("slo"):
        best = best_point(result)
        return best, "the highest load meeting the run's SLOs" if best else "no load point met the run's SLOs"
    clean = [p for p in result.points if p.summary.failed == 0 and p.summary.completed > 0]
    best = max(clean, key=lambda p: p.point.value) if clean else None
    return best, "the highest load that completed every request (the run set no SLOs)"


def _rows(result: BenchResult) -> list[str]:
    rows = ["| Load | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | Output tok/s | Req/s | KV-cache use (after) "
            "| GPU use (after) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for p in result.points:
        s = p.summary
        rows.append(f"| {p.point.label} | {_ms(s.ttft, 'p50')} | {_ms(s.ttft, 'p95')} | {_ms(s.itl, 'p50')} "
                    f"| {_ms(s.itl, 'p95')} | {s.output_throughput:.1f} | {s.request_throughput:.2f} "
                    f"| {_percent(_kv_after(p), 100)} | {_percent(_after(p, GPU_UTILIZATION), 100)} |")
    return rows


def baseline_lines(plan, result: BenchResult) -> list[str]:
    config = result.config
    best, rule = max_load(result)
    lines = [f"Measured by `trtpipe bench run` ({result.started_at}, trtpipe {result.trtpipe_version}) against "
             f"`{config['url']}`, model `{result.model}`"
             + (f", label `{config['label']}`" if config.get("label") else "") + ".",
             f"Workload: {config['num_prompts']} prompts per point, input {config['input_len']} tokens, output "
             f"{config['output_len']} tokens.", ""]
    if result.model != plan.config.name:
        lines += [f"NOTE: the bench ran model `{result.model}`, not `{plan.config.name}`.", ""]
    lines += _rows(result) + [""]
    if best is None:
        lines.append(f"Max concurrency: none ({rule}).")
    else:
        s = best.summary
        lines += [f"Max concurrency: **{best.point.label}** ({rule}): TTFT p50 {_ms(s.ttft, 'p50')}, p95 "
                  f"{_ms(s.ttft, 'p95')}; {s.output_throughput:.1f} output tokens/s; {s.request_throughput:.2f} "
                  f"requests/s; KV-cache use after it {_percent(_kv_after(best), 100)}; GPU use "
                  f"{_percent(_after(best, GPU_UTILIZATION), 100)}."]
    return lines
