"""The build pipeline on tiny-llama: caching, downstream-only rebuilds, gates, concurrency, crash recovery."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from trtpipe.build import build, run_stages
from trtpipe.cache import ArtifactCache
from trtpipe.cli import cli
from trtpipe.config import load_config
from trtpipe.errors import StageError
from trtpipe.manifest import Manifest
from trtpipe.repo import layout


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def statuses(config, cache) -> dict[str, str]:
    _, records = run_stages(config, cache)
    return {r.stage: "passthrough" if r.meta.get("passthrough") else ("cached" if r.cached else "built")
            for r in records}


def test_no_op_rebuild_hits_every_stage_and_takes_under_two_seconds(home):
    repo = home / "repo"
    build(load_config("tiny-llama"), repo)
    t0 = time.perf_counter()
    again = build(load_config("tiny-llama"), repo)
    seconds = time.perf_counter() - t0
    assert all(s.cached for s in again.manifest.stages)
    assert again.published.unchanged and again.published.version == 1
    assert seconds < 2.0, f"no-op rebuild took {seconds:.2f} s"


def test_changed_engine_limit_rebuilds_only_compile(home):
    cache = ArtifactCache()
    statuses(load_config("tiny-llama"), cache)
    assert statuses(load_config("tiny-llama", ["engine.max_batch_size=8"]), cache) == \
        {"fetch": "cached", "convert": "cached", "quantize": "passthrough", "compile": "built"}


def test_changed_dtype_rebuilds_convert_and_everything_after_it(home):
    cache = ArtifactCache()
    statuses(load_config("tiny-llama"), cache)
    assert statuses(load_config("tiny-llama", ["dtype=float32"]), cache) == \
        {"fetch": "cached", "convert": "built", "quantize": "passthrough", "compile": "built"}


def test_quantized_build_records_the_logit_delta_in_the_manifest(home):
    result = build(load_config("tiny-llama", ["quantization.format=int8_wo"]), home / "repo")
    [quant] = [s for s in result.manifest.stages if s.stage == "quantize"]
    report = quant.meta["quantization_report"]
    assert report["mode"] == "int8" and report["max_abs_logit_delta"] >= 0
    manifest = Manifest.read(result.published.path / "manifest.json")
    assert manifest.stages[2].meta["quantization_report"] == report


def test_force_rebuilds_the_named_stage(home):
    cache = ArtifactCache()
    statuses(load_config("tiny-llama"), cache)
    _, records = run_stages(load_config("tiny-llama"), cache, force={"convert"})
    assert {r.stage: r.cached for r in records}["convert"] is False


def test_failed_gate_publishes_nothing_and_keeps_the_live_version(home):
    repo = home / "repo"
    build(load_config("tiny-llama"), repo)
    with pytest.raises(StageError, match="failed its gate"):
        build(load_config("tiny-llama", ["engine.max_batch_size=16", "gate.min_output_tokens_per_s=1e12"]), repo,
              gate=True)
    assert layout.versions(repo / "tiny-llama-engine") == [1]
    assert layout.live_version(repo / "tiny-llama-engine") == 1


def test_gate_fails_when_greedy_output_changes_but_the_weights_did_not(home):
    repo = home / "repo"
    first = build(load_config("tiny-llama"), repo, gate=True)
    live_manifest = first.published.path / "manifest.json"
    tampered = json.loads(live_manifest.read_text())
    tampered["gate"]["golden_outputs"][0] = [1, 2, 3]
    live_manifest.write_text(json.dumps(tampered))
    with pytest.raises(StageError, match="greedy output changed although the weights did not"):
        build(load_config("tiny-llama", ["engine.max_batch_size=16"]), repo, gate=True)


def _build_in_process(home: str, repo: str) -> int:
    os.environ["TRTPIPE_HOME"] = home
    result = build(load_config("tiny-llama"), Path(repo))
    return result.published.version


def test_two_concurrent_builds_of_one_config_publish_exactly_one_version(home):
    repo = home / "repo"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        versions = pool.starmap(_build_in_process, [(str(home), str(repo))] * 2)
    assert versions == [1, 1]
    assert layout.versions(repo / "tiny-llama-engine") == [1]


KILLABLE_BUILD = """
import sys, time
from pathlib import Path
import trtpipe.backends.reference as compile_stage
from trtpipe.build import build
from trtpipe.config import load_config

def stuck(engine_dir):
    (engine_dir / "stuck").write_text("mid-stage")
    time.sleep(120)

compile_stage._smoke_gate = stuck
build(load_config("tiny-llama"), Path(sys.argv[1]))
"""


def test_a_build_killed_mid_stage_leaves_nothing_visible_and_the_rerun_publishes(home, tmp_path):
    repo = home / "repo"
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(repo)], env={**os.environ})
    compile_dir = home / "artifacts" / "compile"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(compile_dir.glob(".tmp-*/stuck")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(compile_dir.glob(".tmp-*")), "the kill should have happened mid-stage"
    assert [p for p in compile_dir.iterdir() if p.is_dir() and not p.name.startswith(".")] == []
    assert layout.live_version(repo / "tiny-llama-engine") is None

    result = build(load_config("tiny-llama"), repo)
    assert result.published.version == 1
    assert list(compile_dir.glob(".tmp-*")) == []
    assert (result.published.path / "engine" / "weights.safetensors").is_file()


def test_build_all_reports_each_config_and_fails_without_touching_live(home, tmp_path, monkeypatch):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "good.yaml").write_text("extends: tiny-llama\nname: good\n")
    (configs / "broken.yaml").write_text("name: broken\nsource: {path: /nonexistent}\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(configs))
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "nightly.json"
    result = CliRunner().invoke(cli, ["build", "--all", "--repo", str(home / "repo"), "--report", str(report)])
    assert result.exit_code == 1
    outcomes = {o["config"]: o for o in json.loads(report.read_text())["results"]}
    assert outcomes["good"]["status"] == "published" and outcomes["good"]["gate"]["passed"]
    assert outcomes["broken"]["status"] == "failed" and "not a Hugging Face checkpoint" in outcomes["broken"]["error"]
    again = CliRunner().invoke(cli, ["build", "--all", "--match", "good", "--repo", str(home / "repo"),
                                     "--report", str(report)])
    assert again.exit_code == 0
    assert json.loads(report.read_text())["results"][0]["status"] == "unchanged"


def test_cache_gc_keeps_what_published_versions_use(home):
    repo = home / "repo"
    build(load_config("tiny-llama"), repo)
    run_stages(load_config("tiny-llama", ["engine.max_batch_size=8"]), ArtifactCache())
    result = CliRunner().invoke(cli, ["cache", "gc", "--repo", str(repo)])
    assert result.exit_code == 0 and "removed 1 artifact" in result.output
    assert all(s.cached for s in build(load_config("tiny-llama"), repo).manifest.stages)
