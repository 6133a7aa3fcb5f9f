import json

import pytest
from click.testing import CliRunner

from trtpipe.bench.report import load_result
from trtpipe.commands.bench import bench

SECRET = "sk-test-secret-4242"


@pytest.fixture(scope="module")
def report_run(fake_server, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    result = CliRunner().invoke(bench, [
        "run", "--url", fake_server.url, "--concurrency", "1,2", "--num-prompts", "2", "--input-len", "8",
        "--slo", "ttft=1s,e2e=5s", "--label", "nightly", "--out", str(out_dir)], env={"TRTPIPE_API_KEY": SECRET})
    return result, out_dir


def test_run_writes_json_markdown_and_plots(report_run):
    result, out_dir = report_run
    assert result.exit_code == 0, result.output
    assert {p.name for p in out_dir.iterdir()} >= {"results.json", "report.md", "ttft.png", "itl.png",
                                                   "throughput.png"}
    data = json.loads((out_dir / "results.json").read_text())
    assert [p["point"]["label"] for p in data["points"]] == ["c=1", "c=2"]
    request = data["points"][0]["requests"][0]
    assert len(request["chunk_times_s"]) == 20 and request["output_tokens"] == 20
    report = (out_dir / "report.md").read_text()
    assert "# Performance Baseline - nightly" in report
    assert "Highest concurrency meeting the SLOs: c=2" in report
    assert "approximated by words" in report


def test_api_key_is_sent_but_never_written_or_printed(report_run, fake_server):
    result, out_dir = report_run
    assert f"Bearer {SECRET}" in fake_server.state.auth_headers
    assert SECRET not in result.output
    for path in out_dir.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
    assert load_result(out_dir).config["has_api_key"] is True


def test_options_without_a_subcommand_mean_run(fake_server, tmp_path):
    result = CliRunner().invoke(bench, ["--url", fake_server.url, "--concurrency", "1", "--num-prompts", "1",
                                        "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results.json").exists()


def test_connection_refused_is_a_clean_error_naming_the_url_and_fix(tmp_path):
    result = CliRunner().invoke(bench, ["run", "--url", "http://127.0.0.1:9/v1", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot connect" in result.output and "127.0.0.1:9/v1" in result.output and "Fix:" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "results.json").exists()


def test_bad_option_value_is_a_usage_error_naming_the_option():
    result = CliRunner().invoke(bench, ["run", "--slo", "latency=1s"])
    assert result.exit_code == 2
    assert "--slo" in result.output
