"""The bench gate against the real frontend and Triton: ITL as the client measures it agrees with the server's own
histogram on the same run, and two runs of the unchanged server pass `bench compare`; a slowed server fails it."""

from __future__ import annotations

import re

import httpx
import pytest
from click.testing import CliRunner

from tests.unit.bench.fake_server import FakeServer
from trtpipe.bench.compare import compare_results
from trtpipe.bench.config import BenchConfig
from trtpipe.bench.load import run_sweep
from trtpipe.bench.report import write_report
from trtpipe.commands.bench import bench

pytestmark = pytest.mark.e2e
ITL = "trtpipe_inter_token_latency_seconds"


def server_itl(frontend: str) -> tuple[float, float, dict[float, float]]:
    """(sum, count, {le: cumulative count}) of the frontend's ITL histogram for tiny-llama."""
    text = httpx.get(frontend.removesuffix("/v1") + "/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        if line.startswith(ITL) and 'model="tiny-llama"' in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    buckets = {float(re.search(r'le="([^"]+)"', k).group(1)): v for k, v in values.items() if "_bucket{" in k}
    # No request for the model yet: no samples (the labelled series appears with the first).
    return values.get(f'{ITL}_sum{{model="tiny-llama"}}', 0.0), values.get(f'{ITL}_count{{model="tiny-llama"}}', 0.0), \
        buckets


def bench_config(url: str, model: str, **overrides) -> BenchConfig:
    return BenchConfig(**{"url": url, "model": model, "endpoint": "completions", "concurrencies": (4,),
                          "num_prompts": 8, "input_len": 16, "output_len": 24, "ignore_eos": True, "rounds": 3,
                          **overrides})


def test_bench_itl_agrees_with_the_servers_histogram_and_identical_runs_pass_compare(frontend):
    sum0, count0, buckets0 = server_itl(frontend)
    first = run_sweep(bench_config(frontend, "tiny-llama"))
    sum1, count1, buckets1 = server_itl(frontend)
    [point] = first.points
    server_mean_ms = 1000 * (sum1 - sum0) / (count1 - count0)
    assert point.summary.itl.mean == pytest.approx(server_mean_ms, rel=0.25)
    # The server's p50 lies in the first bucket holding half its samples; the client's p50 must not collapse
    # below that bucket's lower edge (chunks read together used to count as ~0 ms gaps).
    half = (count1 - count0) / 2
    edges = sorted(buckets1)
    upper = next(le for le in edges if buckets1[le] - buckets0.get(le, 0) >= half)
    lower = max([le for le in edges if le < upper], default=0.0)
    assert point.summary.itl.p50 >= 1000 * lower / 2

    second = run_sweep(bench_config(frontend, "tiny-llama"))
    comparison = compare_results(first, second)
    assert comparison.has_noise_band and not comparison.has_regression, \
        [(d.metric.name, d.old, d.new, d.limit) for p in comparison.points for d in p.regressions]


def test_a_run_against_a_server_slowed_twofold_fails_the_gate(tmp_path):
    server = FakeServer().start()
    try:
        config = bench_config(server.url, "fake", endpoint="chat", concurrencies=(2,), num_prompts=4)
        server.state.itl_s = 0.010
        write_report(run_sweep(config), tmp_path / "old", with_plots=False)
        server.state.itl_s = 0.020  # the engine made twice as slow per token
        write_report(run_sweep(config), tmp_path / "new", with_plots=False)
    finally:
        server.stop()
    result = CliRunner().invoke(bench, ["compare", str(tmp_path / "old"), str(tmp_path / "new")])
    assert result.exit_code == 1
    assert result.output.endswith("regression: c=2 itl_p50, c=2 itl_p99, c=2 tput\n")
