"""`trtpipe bench`: measure any OpenAI-compatible streaming endpoint the way `vllm bench serve` does.

Library API (the CLI in `trtpipe.commands.bench` is a thin shell over it):

    result = run_sweep(BenchConfig(url=..., concurrencies=(1, 4, 16)))
    write_report(result, "bench/results/today")
    comparison = compare_results(load_result(old_dir), load_result(new_dir))

Modules, in data-flow order: config -> prompts -> client -> load -> metrics -> results -> report/plots,
compare; scrape reads Prometheus pages; terminal draws progress and tables.
"""

from trtpipe.bench.compare import Comparison, compare_results, parse_thresholds
from trtpipe.bench.config import BenchConfig, Slo, SweepPoint, parse_slo
from trtpipe.bench.errors import BenchConfigError, BenchError
from trtpipe.bench.load import poisson_arrival_times, run_sweep, run_sweep_async
from trtpipe.bench.metrics import stats_ms, summarize
from trtpipe.bench.report import load_result, write_report
from trtpipe.bench.results import BenchResult, PointResult, PointSummary, RequestRecord, Stats

__all__ = [
    "BenchConfig", "BenchConfigError", "BenchError", "BenchResult", "Comparison", "PointResult", "PointSummary",
    "RequestRecord", "Slo", "Stats", "SweepPoint", "compare_results", "load_result", "parse_slo",
    "parse_thresholds", "poisson_arrival_times", "run_sweep", "run_sweep_async", "stats_ms", "summarize",
    "write_report",
]
