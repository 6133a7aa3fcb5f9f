"""PNG plots of a sweep: TTFT and ITL percentiles, and throughput, against the load level.

Concurrency (and finite request rates) go on a log2 x-axis, the usual 1, 2, 4, ... sweep spacing;
a sweep containing rate=inf is drawn at evenly spaced, labelled positions instead.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402

from trtpipe.bench.results import BenchResult, PointResult, Stats  # noqa: E402

PERCENTILE_FIELDS = ("p50", "p95", "p99")


def write_plots(result: BenchResult, out_dir: Path) -> list[Path]:
    points = sorted(result.points, key=lambda p: p.point.value)
    if not points:
        return []
    return [
        _percentile_plot(points, "ttft", "TTFT", out_dir / "ttft.png"),
        _percentile_plot(points, "itl", "ITL", out_dir / "itl.png"),
        _throughput_plot(points, out_dir / "throughput.png"),
    ]


def _percentile_plot(points: list[PointResult], metric: str, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = _setup_x_axis(ax, points)
    for field in PERCENTILE_FIELDS:
        ys = [_value(getattr(p.summary, metric), field) for p in points]
        ax.plot(xs, ys, marker="o", label=field)
    ax.set_ylabel(f"{title} (ms)")
    ax.set_title(f"{title} percentiles vs load")
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, path)


def _throughput_plot(points: list[PointResult], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    xs = _setup_x_axis(ax, points)
    ax.plot(xs, [p.summary.output_throughput for p in points], marker="o", color="tab:blue", label="output tok/s")
    ax.set_ylabel("output tokens/s", color="tab:blue")
    ax.grid(True, alpha=0.3)
    requests_ax = ax.twinx()
    requests_ax.plot(xs, [p.summary.request_throughput for p in points], marker="s", color="tab:orange",
                     label="req/s")
    if any(p.summary.goodput is not None for p in points):
        requests_ax.plot(xs, [_or_nan(p.summary.goodput) for p in points], marker="^", linestyle="--",
                         color="tab:green", label="goodput req/s")
    requests_ax.set_ylabel("requests/s")
    handles = ax.get_legend_handles_labels()[0] + requests_ax.get_legend_handles_labels()[0]
    ax.legend(handles, [h.get_label() for h in handles], loc="upper left")
    ax.set_title("Throughput vs load")
    return _save(fig, path)


def _setup_x_axis(ax, points: list[PointResult]) -> list[float]:
    values = [p.point.value for p in points]
    ax.set_xlabel("concurrency" if points[0].point.mode == "concurrency" else "request rate (req/s)")
    if any(math.isinf(v) for v in values):
        xs = list(range(len(points)))
        ax.set_xticks(xs, [p.point.label.split("=", 1)[1] for p in points])
        return xs
    ax.set_xscale("log", base=2)
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
    return values


def _value(stats: Stats | None, field: str) -> float:
    return math.nan if stats is None else getattr(stats, field)


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
