"""`trtpipe plan --baseline`: a real `trtpipe bench run` against the session's frontend and Triton (the reference
engine on this CPU), then the plan's Performance Baseline carries that report's numbers."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trtpipe.bench.report import load_result
from trtpipe.cli import cli

pytestmark = pytest.mark.e2e


def test_the_performance_baseline_is_filled_from_a_real_bench_report(frontend, triton, tmp_path):
    bench_dir = tmp_path / "bench"
    run = CliRunner().invoke(cli, ["bench", "run", "--url", frontend, "--model", "tiny-llama", "--concurrency", "1,2",
                                   "--num-prompts", "4", "--input-len", "16", "--output-len", "6", "--ignore-eos",
                                   "--metrics-url", f"http://127.0.0.1:{triton.ports.metrics}/metrics",
                                   "--label", "cpu-baseline", "--out", str(bench_dir)])
    assert run.exit_code == 0, run.output
    result = load_result(bench_dir)
    plan = CliRunner().invoke(cli, ["plan", "tiny-llama", "--gpu", "l40s-48gb", "--baseline", str(bench_dir),
                                    "--out", str(tmp_path / "plan")])
    assert plan.exit_code == 0, plan.output
    doc = (tmp_path / "plan" / "performance-baseline.md").read_text()
    assert "Placeholder" not in doc and "label `cpu-baseline`" in doc
    for point in result.points:
        s = point.summary
        assert (f"| {point.point.label} | {s.ttft.p50:.1f} ms | {s.ttft.p95:.1f} ms | {s.itl.p50:.1f} ms "
                f"| {s.itl.p95:.1f} ms | {s.output_throughput:.1f} | {s.request_throughput:.2f} |") in doc
    # No SLOs in the run: the maximum is the highest load that completed every request, and it says so.
    assert f"Max concurrency: **{result.points[-1].point.label}** (the highest load that completed every" in doc
    # The KV-cache use comes from the engine's own gauges on Triton's /metrics, scraped after each point; there is
    # no GPU here, so no GPU use.
    [row] = [line for line in doc.splitlines() if line.startswith(f"| {result.points[-1].point.label} |")]
    kv, gpu = [cell.strip() for cell in row.split("|")[8:10]]
    assert kv.endswith(" %") and gpu == "not scraped"
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["config"] == "tiny-llama"
