"""The trtllm-pytorch build configs through `--dry-run`, `trtpipe plan` and scripts/gpu-smoke.sh's inputs.

These tests check what trtpipe would run and write for TensorRT-LLM's PyTorch backend; they do not run
TensorRT-LLM, ModelOpt or a GPU.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from trtpipe.cli import cli
from trtpipe.config import load_config
from trtpipe.dry_run import describe_build
from trtpipe.trt.llm_args import llm_args

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def env(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    for var in ("TRTPIPE_PYTHON", "TRTPIPE_MODELOPT_EXAMPLES", "HF_TOKEN"):
        monkeypatch.delenv(var, raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the dry run opened a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "repo"


def _yaml_block(text: str) -> dict:
    """The text printed under `write llm_api_options.yaml:` (the record file after it is JSON)."""
    block = text.split("write llm_api_options.yaml:", 1)[1].split("write llm_api_options.trtpipe.json:", 1)[0]
    lines = [line.split("| ", 1)[1] for line in block.splitlines() if line.strip().startswith("| ")]
    return yaml.safe_load("\n".join(lines))


def test_llama_8b_pytorch_dry_run_fetches_the_eagle3_head_quantizes_writes_the_yaml_and_publishes_one_model(env, tmp_path):
    text = describe_build(load_config("llama-8b-pytorch"), env)
    heads = [line.split("  ")[0] for line in text.splitlines() if line[:2] in ("==", "1.", "2.", "3.", "4.")]
    assert heads == ["== llama-3.1-8b-eagle3: the eagle3 draft of llama-8b-pytorch, fetched only (the engine "
                     "speculates; it is part of the target's engine directory, not its own model) ==",
                     "1. fetch", "== llama-8b-pytorch ==", "1. fetch", "2. quantize", "3. configure", "4. publish"]
    [argv] = [shlex.split(line.strip()[2:]) for line in text.splitlines() if line.strip().startswith("$ ")]
    assert argv[:6] == ["python3", "-m", "trtpipe.trt.seeded_ptq", "--seed", "0", "/opt/modelopt/examples/llm_ptq/hf_ptq.py"]
    assert "trtllm-build" not in text
    assert argv[argv.index("--qformat") + 1] == "fp8" and argv[argv.index("--kv_cache_qformat") + 1] == "fp8"
    # The YAML printed is the YAML the configure stage writes, every argument of it.
    assert _yaml_block(text) == llm_args(load_config("llama-8b-pytorch"), has_draft=True)
    assert "into <tmp>/checkpoint/, and the eagle3 draft's" in text
    assert f"writes {env}/llama-8b-pytorch-engine/.staging-1/, renamed to {env}/llama-8b-pytorch-engine/1/" in text
    assert "-preprocessing" not in text and "-ensemble" not in text and "kind: KIND_MODEL" in text
    assert "spec.json: engine_speculation Eagle, no draft model" in text
    assert '"tensorrt_llm": "1.1.0"' in text.split("write llm_api_options.trtpipe.json:", 1)[1]
    [spec_line] = [line.strip() for line in text.splitlines() if line.strip().startswith("spec.json: {")]
    spec = json.loads(spec_line.removeprefix("spec.json: "))
    assert spec["backend"] == "trtllm-pytorch" and spec["engine_speculation"] == "Eagle" and spec["max_draft_len"] == 0
    assert not (tmp_path / "home").exists() and not env.exists()


def test_llama_8b_pytorch_dry_run_shows_guided_decoding_on_in_the_yaml_and_the_spec_and_none_turns_both_off(env):
    text = describe_build(load_config("llama-8b-pytorch"), env)
    assert _yaml_block(text)["guided_decoding_backend"] == "xgrammar"  # TorchLlmArgs: the engine enforces guides
    assert "spec.json: guided_decoding xgrammar: the frontend sends response_format, forced tool calls" in text
    assert "generate_xgrammar_tokenizer_info.py" not in text  # the LLM API compiles against its own tokenizer
    off = describe_build(load_config("llama-8b-pytorch", ["serving.guided_decoding=none"]), env)
    assert "guided_decoding_backend" not in _yaml_block(off)
    assert "spec.json: guided_decoding off (serving.guided_decoding: none)" in off
    llguidance = describe_build(load_config("llama-8b-pytorch", ["serving.guided_decoding=llguidance"]), env)
    assert _yaml_block(llguidance)["guided_decoding_backend"] == "llguidance"


def test_llama_70b_pytorch_dry_run_has_no_draft_chain_and_says_the_llm_api_starts_four_ranks(env):
    text = describe_build(load_config("llama-70b-pytorch"), env)
    assert "==" not in text.split("== llama-70b-pytorch ==")[0].split("preflight")[1]
    assert "the LLM API starts its 4 ranks (tp*pp) itself" in text and "$ mpirun" not in text
    assert _yaml_block(text)["tensor_parallel_size"] == 4
    assert "machine: 4 GPU(s) of one architecture" in text


def test_plan_works_for_the_pytorch_configs_and_shows_the_llm_api_arguments(tmp_path):
    result = CliRunner().invoke(cli, ["plan", "llama-8b-pytorch", "--gpu", "h100-sxm-80gb", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "llama-8b-pytorch on h100-sxm-80gb x1" in result.output
    doc = (tmp_path / "serving-configuration.md").read_text()
    assert "TensorRT-LLM >= 1.1, PyTorch backend through the LLM API" in doc
    assert "decoding_type: Eagle\n" in doc and "hf_ptq.py" in doc and "trtllm-build" not in doc
    assert ("| Speculation | eagle3 by the engine itself (speculative_config decoding_type Eagle), up to 3 draft "
            "tokens per step, draft llama-3.1-8b-eagle3 inside the engine; the frontend runs no draft loop |") in doc
    assert "KV pool llama-3.1-8b-eagle3" not in result.output  # one executor, one pool
    big = CliRunner().invoke(cli, ["plan", "llama-70b-pytorch", "--gpu", "h100-sxm-80gb"])
    assert big.exit_code == 0, big.output
    assert "llama-70b-pytorch on h100-sxm-80gb x4" in big.output


def test_gpu_smoke_runs_the_pytorch_backend_in_the_same_command():
    text = (ROOT / "scripts" / "gpu-smoke.sh").read_text()
    default = re.search(r'SMOKE_PYTORCH_MODELS=\$\{SMOKE_PYTORCH_MODELS-"([^"]*)"\}', text).group(1).split()
    assert default == ["tinyllama-pytorch"]
    for name in default:
        config = load_config(name)
        assert config.backend == "trtllm-pytorch" and config.quantization is None
    assert 'for m in $SMOKE_MODELS $SMOKE_PYTORCH_MODELS; do' in text and "llm_api_options.yaml" in text
