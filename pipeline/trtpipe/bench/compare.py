"""NEW vs OLD per matched sweep point, and the regression gate the nightly job runs on it.

Latencies regress when NEW/OLD rises above their threshold; throughput regresses when NEW/OLD falls
below its threshold; the error rate regresses when it rises by more than its threshold (an absolute
increase, since a ratio of zero error rates means nothing). A metric missing on either side (e.g. ITL
of a non-streaming run) is shown and not judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from trtpipe.bench.results import BenchResult, PointSummary

Rule = Literal["max_ratio", "min_ratio", "max_increase"]


@dataclass(frozen=True)
class GateMetric:
    name: str
    title: str
    rule: Rule
    default_threshold: float
    value_of: Callable[[PointSummary], float | None]


GATE_METRICS = {
    m.name: m
    for m in (
        GateMetric("ttft_p50", "TTFT p50", "max_ratio", 1.10, lambda s: s.ttft and s.ttft.p50),
        GateMetric("ttft_p95", "TTFT p95", "max_ratio", 1.15, lambda s: s.ttft and s.ttft.p95),
        GateMetric("itl_p50", "ITL p50", "max_ratio", 1.10, lambda s: s.itl and s.itl.p50),
        GateMetric("itl_p99", "ITL p99", "max_ratio", 1.25, lambda s: s.itl and s.itl.p99),
        GateMetric("tput", "output tok/s", "min_ratio", 0.90, lambda s: s.output_throughput),
        GateMetric("err_rate", "error rate", "max_increase", 0.01, lambda s: s.error_rate),
    )
}
DEFAULT_THRESHOLDS = {name: m.default_threshold for name, m in GATE_METRICS.items()}


@dataclass(frozen=True)
class MetricDelta:
    metric: GateMetric
    old: float | None
    new: float | None
    threshold: float

    @property
    def ratio(self) -> float | None:
        if self.old is None or self.new is None or self.old == 0:
            return None
        return self.new / self.old

    @property
    def is_regression(self) -> bool:
        if self.metric.rule == "max_increase":
            return self.old is not None and self.new is not None and self.new - self.old > self.threshold
        if self.ratio is None:
            return False
        return self.ratio > self.threshold if self.metric.rule == "max_ratio" else self.ratio < self.threshold


@dataclass(frozen=True)
class PointComparison:
    label: str
    deltas: list[MetricDelta]

    @property
    def regressions(self) -> list[MetricDelta]:
        return [d for d in self.deltas if d.is_regression]


@dataclass(frozen=True)
class Comparison:
    points: list[PointComparison]
    only_in_old: list[str]
    only_in_new: list[str]

    @property
    def has_regression(self) -> bool:
        return any(p.regressions for p in self.points)


def parse_thresholds(text: str | None) -> dict[str, float]:
    """`"ttft_p95=1.10,tput=0.90"` -> the defaults with those two replaced."""
    thresholds = dict(DEFAULT_THRESHOLDS)
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in GATE_METRICS:
            raise ValueError(f"expected key=number with key one of {', '.join(GATE_METRICS)}. Given: {part}")
        try:
            thresholds[key] = float(value)
        except ValueError:
            raise ValueError(f"`{key}` threshold must be a number. Given: {value}") from None
    return thresholds


def compare_results(old: BenchResult, new: BenchResult, thresholds: dict[str, float] | None = None) -> Comparison:
    """Pairs sweep points by load level (e.g. c=16 with c=16) and judges each gate metric."""
    thresholds = {**DEFAULT_THRESHOLDS, **(thresholds or {})}
    old_points = {p.point.label: p for p in old.points}
    new_points = {p.point.label: p for p in new.points}
    compared = []
    for label, new_point in new_points.items():
        if label not in old_points:
            continue
        old_summary, new_summary = old_points[label].summary, new_point.summary
        deltas = [MetricDelta(m, _number(m.value_of(old_summary)), _number(m.value_of(new_summary)), thresholds[name])
                  for name, m in GATE_METRICS.items()]
        compared.append(PointComparison(label, deltas))
    return Comparison(points=compared, only_in_old=[k for k in old_points if k not in new_points],
                      only_in_new=[k for k in new_points if k not in old_points])


def _number(value) -> float | None:
    # `stats and stats.p50` yields None for missing stats; keep real zeros as zeros.
    return None if value is None else float(value)
