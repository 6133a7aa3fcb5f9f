"""scripts/gpu-smoke.sh and the configs it builds. The script runs only on a GPU host inside the
TensorRT-LLM image; here it is parsed (bash -n) and its inputs are checked, not run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from trtpipe.config import load_config
from trtpipe.trt.recipes import build_commands, check_trt_config, checkpoint_command

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "gpu-smoke.sh"


def test_the_script_parses_as_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_finds_nothing():
    result = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_the_script_fails_fast_and_builds_configs_that_exist():
    text = SCRIPT.read_text()
    assert "set -Eeuo pipefail" in text and "trap on_error ERR" in text
    default = re.search(r'SMOKE_MODELS=\$\{SMOKE_MODELS:-"([^"]+)"\}', text).group(1).split()
    assert default == ["tinyllama-trt", "llama-8b"]
    for name in default:
        assert load_config(name).backend == "trt-engine"
    for command in ("trtpipe build", "trtpipe serve", "trtpipe bench run", "--dry-run", "tests/e2e"):
        assert command in text


def test_tinyllama_trt_is_a_plain_bf16_engine_from_a_pinned_commit(tools):
    config = load_config("tinyllama-trt")
    check_trt_config(config)
    assert re.fullmatch(r"[0-9a-f]{40}", config.source.revision)
    assert config.quantization is None and config.speculation is None and config.parallelism.world_size == 1
    convert = checkpoint_command(config, Path("/hf"), Path("/ckpt"), tools)
    assert convert.argv[1] == "/app/examples/models/core/llama/convert_checkpoint.py"
    assert convert.env == {"HF_HUB_OFFLINE": "1"}
    [build] = build_commands(config, Path("/ckpt"), Path("/engine"), tools)
    assert "--use_fp8_context_fmha" not in build.argv and "--speculative_decoding_mode" not in build.argv
