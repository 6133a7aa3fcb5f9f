"""NEW vs OLD per matched sweep point, and the regression gate the nightly job runs on it.

Latencies regress when NEW/OLD rises above their threshold; throughput regresses when NEW/OLD falls
below its threshold; the error rate regresses when it rises by more than its threshold (an absolute
increase, since a ratio of zero error rates means nothing). A metric missing on either side (e.g. ITL
of a non-streaming run) is shown and not judged.

Runs made with `--rounds N` are judged on repeated rounds: each side's value is the median of its rounds,
and the limit widens by the noise band measured in the same runs, the larger of the two sides' spread
(max - min of the rounds, relative to their median for ratios, absolute for the error rate). So two runs
of one unchanged server pass however noisy the machine, and a change has to stand out of the noise to
fail. A side with one round has no noise band (the threshold alone decides, as before).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Callable, Literal

from trtpipe.bench.results import BenchResult, PointResult, PointSummary

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
    old: float | None  # the median of OLD's rounds (its one value with one round)
    new: float | None
    threshold: float
    noise: float = 0.0  # the noise band measured in the two runs: relative for ratios, absolute for max_increase
    rounds: tuple[int, int] = (1, 1)  # (OLD, NEW) rounds the values come from

    @property
    def limit(self) -> float:
        """The threshold widened by the noise band."""
        return self.threshold - self.noise if self.metric.rule == "min_ratio" else self.threshold + self.noise

    @property
    def ratio(self) -> float | None:
        if self.old is None or self.new is None or self.old == 0:
            return None
        return self.new / self.old

    @property
    def is_regression(self) -> bool:
        if self.metric.rule == "max_increase":
            return self.old is not None and self.new is not None and self.new - self.old > self.limit
        if self.ratio is None:
            return False
        return self.ratio > self.limit if self.metric.rule == "max_ratio" else self.ratio < self.limit


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

    @property
    def has_noise_band(self) -> bool:
        return bool(self.points) and all(min(d.rounds) > 1 for p in self.points for d in p.deltas)


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
        deltas = [_delta(m, old_points[label], new_point, thresholds[name]) for name, m in GATE_METRICS.items()]
        compared.append(PointComparison(label, deltas))
    return Comparison(points=compared, only_in_old=[k for k in old_points if k not in new_points],
                      only_in_new=[k for k in new_points if k not in old_points])


def _round_values(metric: GateMetric, point: PointResult) -> list[float]:
    summaries = point.rounds if len(point.rounds) > 1 else [point.summary]
    return [v for v in (_number(metric.value_of(s)) for s in summaries) if v is not None]


def _spread(metric: GateMetric, values: list[float]) -> float:
    """max - min of the rounds: relative to their median for ratio rules, absolute for max_increase."""
    if len(values) < 2:
        return 0.0
    width = max(values) - min(values)
    if metric.rule == "max_increase":
        return width
    median = statistics.median(values)
    return width / median if median else 0.0


def _delta(metric: GateMetric, old: PointResult, new: PointResult, threshold: float) -> MetricDelta:
    old_values, new_values = _round_values(metric, old), _round_values(metric, new)
    return MetricDelta(metric, statistics.median(old_values) if old_values else None,
                       statistics.median(new_values) if new_values else None, threshold,
                       noise=max(_spread(metric, old_values), _spread(metric, new_values)),
                       rounds=(max(len(old.rounds), 1), max(len(new.rounds), 1)))


def _number(value) -> float | None:
    # `stats and stats.p50` yields None for missing stats; keep real zeros as zeros.
    return None if value is None else float(value)
