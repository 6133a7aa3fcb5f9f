"""Every failure a user can cause prints one message (what, where, fix) and no traceback, with its class's exit
code; a bug in trtpipe says so (70); --debug adds the traceback. Through cli.run, as the console script runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.repo.test_verify import flip_byte
from trtpipe.cli import run
from trtpipe.stages.synthetic import write_synthetic_checkpoint


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TRTPIPE_DEBUG", raising=False)
    return tmp_path / "home"


def trtpipe(capsys, *argv: str) -> tuple[int, str]:
    code = run(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def local_config(tmp_path: Path, edit_config_json=None) -> str:
    ckpt = tmp_path / "ckpt"
    write_synthetic_checkpoint("tiny-llama", ckpt)
    if edit_config_json:
        cfg = json.loads((ckpt / "config.json").read_text())
        edit_config_json(cfg)
        (ckpt / "config.json").write_text(json.dumps(cfg))
    config = tmp_path / "local.yaml"
    config.write_text(f"extends: tiny-llama\nname: local\nsource: {{synthetic: null, path: '{ckpt}'}}\n")
    return str(config)


def test_a_config_error_exits_3_with_one_message(home, capsys):
    code, out = trtpipe(capsys, "build", "no-such-config")
    assert code == 3
    assert out.startswith("Error: no build config named 'no-such-config'\nFix: use one of: ")
    assert "Traceback" not in out


def test_an_unsupported_architecture_is_a_source_error_exit_4(home, tmp_path, capsys):
    config = local_config(tmp_path, lambda c: c.update(architectures=["GPTNeoXForCausalLM"], model_type="gpt_neox"))
    code, out = trtpipe(capsys, "build", config)
    assert code == 4
    assert "Error: convert: the reference engine cannot run this checkpoint: " in out
    assert "GPTNeoXForCausalLM" in out and "Fix: use a Llama-family checkpoint" in out
    assert "Traceback" not in out


def test_a_sliding_window_mistral_is_a_source_error_exit_4(home, tmp_path, capsys):
    config = local_config(tmp_path, lambda c: c.update(architectures=["MistralForCausalLM"], model_type="mistral",
                                                       sliding_window=4096))
    code, out = trtpipe(capsys, "build", config)
    assert code == 4 and "sliding-window attention" in out and "Traceback" not in out


def test_a_machine_without_the_gpu_toolchain_exits_5(home, capsys):
    code, out = trtpipe(capsys, "build", "llama-8b")
    assert code == 5 and "Error: " in out and "Fix: " in out and "Traceback" not in out


def test_a_disk_filling_up_mid_stage_exits_6_naming_the_stage(home, capsys, monkeypatch):
    def fill_the_disk(engine_dir):
        with open("/dev/full", "wb") as full:  # the kernel's own ENOSPC, mid-compile
            full.write(b"x" * 4096)

    monkeypatch.setattr("trtpipe.backends.reference._smoke_gate", fill_the_disk)
    code, out = trtpipe(capsys, "build", "tiny-llama")
    assert code == 6
    assert "Error: stage compile: the disk filled up while writing the compile artifact under " in out
    assert "Traceback" not in out
    assert not list((home / "artifacts" / "compile").glob(".tmp-*"))


def test_a_damaged_published_file_makes_verify_exit_7_naming_it(home, capsys):
    assert trtpipe(capsys, "build", "tiny-llama")[0] == 0
    flip_byte(home / "model_repository" / "tiny-llama-engine" / "1" / "spec.json")
    code, out = trtpipe(capsys, "verify", "tiny-llama")
    assert code == 7
    assert "tiny-llama-engine/1/spec.json: has sha256" in out and "Traceback" not in out
    flip_byte(home / "model_repository" / "tiny-llama-engine" / "1" / "spec.json")  # flipped back
    code, out = trtpipe(capsys, "verify")
    assert code == 0 and "1 version(s) verified: every file matches its manifest" in out


def test_a_bug_exits_70_in_one_line_and_debug_shows_the_traceback(home, capsys, monkeypatch):
    def broken(repo):
        raise RuntimeError("boom")

    monkeypatch.setattr("trtpipe.repo.versions.list_versions", broken)
    code, out = trtpipe(capsys, "models")
    assert code == 70
    assert out.startswith("Error: internal error in trtpipe: RuntimeError: boom\nFix: this is a bug")
    assert "Traceback" not in out
    code, out = trtpipe(capsys, "--debug", "models")
    assert code == 70 and "Traceback (most recent call last)" in out and 'raise RuntimeError("boom")' in out


def test_a_bad_option_is_a_usage_error_exit_2(home, capsys):
    code, out = trtpipe(capsys, "build", "--keep", "0", "tiny-llama")
    assert code == 2 and "--keep" in out


def test_the_console_script_exits_with_the_class_code_and_prints_no_traceback(home):
    proc = subprocess.run([sys.executable, "-m", "trtpipe", "build", "no-such-config"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3 and proc.stderr.startswith("Error: no build config named") and not proc.stdout
    assert "Traceback" not in proc.stderr
