"""`bench compare` is the nightly gate: exit 1 on a regression, 0 otherwise."""

import json

import pytest
from click.testing import CliRunner

from trtpipe.bench.compare import compare_results, parse_thresholds
from trtpipe.bench.config import SweepPoint
from trtpipe.bench.report import write_report
from trtpipe.bench.results import BenchResult, PointResult, PointSummary, Stats
from trtpipe.commands.bench import bench


def stats(p50, p95=None, p99=None):
    p95, p99 = p95 or p50 * 1.2, p99 or p50 * 1.5
    return Stats(count=10, mean=p50, median=p50, std=1.0, p50=p50, p90=p95, p95=p95, p99=p99)


def make_result(*, ttft=50.0, itl=10.0, tput=1000.0, failed=0, concurrencies=(1, 8)):
    points = []
    for c in concurrencies:
        summary = PointSummary(num_requests=100, completed=100 - failed, failed=failed, duration_s=10.0,
                               total_input_tokens=1000, total_output_tokens=int(tput * 10), request_throughput=10.0,
                               output_throughput=tput, total_token_throughput=tput + 100, goodput=None,
                               slo_attainment=None, meets_slo=None, ttft=stats(ttft), tpot=stats(itl),
                               itl=stats(itl), e2el=stats(1000.0), queue=stats(0.1))
        points.append(PointResult(point=SweepPoint("concurrency", float(c)), summary=summary, requests=[],
                                  started_at="2025-01-01T00:00:00+00:00"))
    config = {"url": "http://x/v1", "endpoint": "chat", "stream": True, "num_prompts": 100, "input_len": 8,
              "output_len": 8, "ignore_eos": False, "seed": 0, "slo": {}, "slo_attainment": 0.95,
              "sweep": [p.point.to_json() for p in points], "label": None}
    return BenchResult(config=config, model="m", started_at="2025-01-01T00:00:00+00:00",
                       prompt_lengths="words", points=points)


def run_compare(tmp_path, old, new, *extra):
    for name, result in (("old", old), ("new", new)):
        write_report(result, tmp_path / name, with_plots=False)
    return CliRunner().invoke(bench, ["compare", str(tmp_path / "old"), str(tmp_path / "new/results.json"), *extra])


def test_identical_runs_pass(tmp_path):
    result = run_compare(tmp_path, make_result(), make_result())
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output


@pytest.mark.parametrize("new", [make_result(ttft=60.0), make_result(tput=850.0), make_result(itl=15.0),
                                 make_result(failed=5)], ids=["ttft", "tput", "itl", "errors"])
def test_a_regression_exits_1_and_names_it(tmp_path, new):
    result = run_compare(tmp_path, make_result(), new)
    assert result.exit_code == 1, result.output
    assert "REGRESSION" in result.output and "regression:" in result.output


def test_improvements_and_small_noise_pass(tmp_path):
    result = run_compare(tmp_path, make_result(), make_result(ttft=40.0, itl=10.5, tput=1200.0))
    assert result.exit_code == 0, result.output


def test_thresholds_can_be_loosened(tmp_path):
    new = make_result(ttft=60.0)  # +20%
    assert run_compare(tmp_path, make_result(), new, "--max-regression", "ttft_p50=1.25,ttft_p95=1.25").exit_code == 0


def test_only_matched_points_are_judged():
    comparison = compare_results(make_result(concurrencies=(1, 8)), make_result(tput=100.0, concurrencies=(64,)))
    assert comparison.points == [] and comparison.only_in_old == ["c=1", "c=8"]
    partial = compare_results(make_result(concurrencies=(1, 8)), make_result(concurrencies=(8, 64)))
    assert [p.label for p in partial.points] == ["c=8"] and partial.only_in_new == ["c=64"]


def test_runs_without_a_common_point_are_an_error(tmp_path):
    result = run_compare(tmp_path, make_result(concurrencies=(1,)), make_result(concurrencies=(2,)))
    assert result.exit_code == 1 and "no sweep point in common" in result.output


def test_unknown_threshold_key_is_a_usage_error(tmp_path):
    result = run_compare(tmp_path, make_result(), make_result(), "--max-regression", "latency=2")
    assert result.exit_code == 2 and "ttft_p95" in result.output
    assert parse_thresholds("tput=0.8")["tput"] == 0.8


def test_not_a_results_file_is_a_clean_error(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"hello": 1}))
    result = CliRunner().invoke(bench, ["compare", str(tmp_path / "bad.json"), str(tmp_path / "bad.json")])
    assert result.exit_code == 1 and "not a bench results file" in result.output
