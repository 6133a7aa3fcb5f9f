"""What the bench shows in the terminal: a progress bar per sweep point and the final rich tables.

Progress goes to stderr so that stdout carries only the tables and can be piped or captured.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from trtpipe.bench.compare import Comparison
from trtpipe.bench.results import BenchResult, PointResult, RequestRecord, Stats


class RichProgress:
    """A `ProgressSink` drawing requests done / total for each sweep point."""

    def __init__(self, console: Console | None = None):
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("errors {task.fields[num_errors]}"), TimeElapsedColumn(),
                                  console=console or Console(stderr=True))
        self._task_id = None
        self._num_errors = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def start_point(self, label: str, num_requests: int) -> None:
        self._num_errors = 0
        self._task_id = self._progress.add_task(label, total=num_requests, num_errors=0)

    def request_done(self, record: RequestRecord) -> None:
        self._num_errors += not record.is_success
        self._progress.update(self._task_id, advance=1, num_errors=self._num_errors)

    def end_point(self, result: PointResult) -> None:
        # A duration cap can end a point early; show it as finished at what was sent.
        self._progress.update(self._task_id, total=result.summary.num_requests,
                              completed=result.summary.num_requests)


def summary_table(result: BenchResult) -> Table:
    table = Table(title=f"{result.model} @ {result.config['url']}", title_justify="left")
    for column in ("load", "ok", "err", "TTFT p50", "TTFT p95", "TTFT p99", "ITL p50", "ITL p99", "TPOT",
                   "E2E p50", "E2E p99", "out tok/s", "req/s", "goodput"):
        table.add_column(column, justify="left" if column == "load" else "right")
    for p in result.points:
        s = p.summary
        table.add_row(p.point.label, str(s.completed), _red_if(s.failed), _ms(s.ttft, "p50"), _ms(s.ttft, "p95"),
                      _ms(s.ttft, "p99"), _ms(s.itl, "p50"), _ms(s.itl, "p99"), _ms(s.tpot, "mean"),
                      _ms(s.e2el, "p50"), _ms(s.e2el, "p99"), f"{s.output_throughput:.1f}",
                      f"{s.request_throughput:.2f}", "-" if s.goodput is None else f"{s.goodput:.2f}")
    table.caption = "latencies in ms; TPOT is the mean"
    return table


def compare_table(comparison: Comparison) -> Table:
    table = Table(title="bench compare (NEW / OLD)", title_justify="left")
    for column in ("load", "metric", "old", "new", "change", "limit", "noise", "verdict"):
        table.add_column(column, justify="left" if column in ("load", "metric", "verdict") else "right")
    for point in comparison.points:
        for d in point.deltas:
            if d.metric.rule == "max_increase":
                change = "-" if d.old is None or d.new is None else f"{d.new - d.old:+.3f}"
                limit, noise = f"<= +{d.limit:.3g}", f"±{d.noise:.3g}"
            else:
                change = "-" if d.ratio is None else f"x{d.ratio:.3f}"
                limit = f"{'<=' if d.metric.rule == 'max_ratio' else '>='} x{d.limit:.3g}"
                noise = f"±{100 * d.noise:.1f}%"
            verdict = "[bold red]REGRESSION[/]" if d.is_regression else "ok"
            table.add_row(point.label, d.metric.title, _num(d.old), _num(d.new), change, limit,
                          noise if min(d.rounds) > 1 else "-", verdict)
    notes = [] if comparison.has_noise_band else \
        ["one round on a side: no noise band measured (bench run --rounds 3 gives one)"]
    notes += [f"only in OLD: {', '.join(comparison.only_in_old)}"] if comparison.only_in_old else []
    notes += [f"only in NEW: {', '.join(comparison.only_in_new)}"] if comparison.only_in_new else []
    table.caption = "; ".join(notes) or None
    return table


def _ms(stats: Stats | None, field: str) -> str:
    return "-" if stats is None else f"{getattr(stats, field):.1f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _red_if(num_failed: int) -> str:
    return f"[red]{num_failed}[/]" if num_failed else "0"
