"""backend trt-engine and checkpoints that come quantized: the convert_checkpoint.py command for AutoAWQ and GPTQ
checkpoints, checked against a recorded stand-in of the pinned TensorRT-LLM 1.1.0 script's argparse and of what it
reads from config.json (tests/unit/trt/fake_convert_checkpoint.py); the refusals, with their messages; the engine
check that follows. These tests do not run TensorRT-LLM, convert_checkpoint.py or trtllm-build (they need a GPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.trt import fake_convert_checkpoint as script
from tests.unit.trt.fakes import write_engine_dir
from tests.unit.trt.prequant_configs import FORMATS, write_checkpoint_configs
from trtpipe.backend_registry import capabilities, check_prequantized
from trtpipe.cache import Artifact
from trtpipe.config import load_config
from trtpipe.engine.checkpoint_quant import read_checkpoint_quant
from trtpipe.errors import ConfigError, SourceError, StageError
from trtpipe.stages.steps import RunCommand, Verify
from trtpipe.trt.engine_dir import verify_engine_dir
from trtpipe.trt.prequantized import convert_flags, engine_quant_algo, read_checked
from trtpipe.trt.recipes import convert_command

CKPT = Path("/cache/ckpt")
# Refused by trtpipe although the script would run: layouts nobody checked the script's loader against.
REFUSED_BY_TRTPIPE_NOT_THE_SCRIPT = {"gptq-v2", "awq-per-channel"}


@pytest.fixture
def engine_config():
    return load_config("llama-8b", ["quantization=null", "speculation=null"])


def _hf_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


@pytest.mark.parametrize("fmt", ["awq", "gptq"])
def test_autoawq_and_gptq_convert_as_they_are_with_the_flags_the_script_takes(fmt, engine_config, tools, tmp_path):
    hf = write_checkpoint_configs(tmp_path / fmt, fmt)
    quant, row = read_checked(engine_config, hf)
    cmd = convert_command(engine_config, hf, CKPT, tools, prequant=quant)
    assert cmd.argv == [
        "python3", "/app/examples/models/core/llama/convert_checkpoint.py", "--model_dir", str(hf),
        "--output_dir", "/cache/ckpt", "--dtype", "bfloat16", "--tp_size", "1", "--pp_size", "1",
        "--use_weight_only", "--weight_only_precision", "int4_gptq", "--per_group", "--group_size", "128"]
    assert cmd.env == {"HF_HUB_OFFLINE": "1"}  # no calibration data: nothing is quantized again
    assert "as quantized" in cmd.description and row.how.startswith("convert_checkpoint.py reads")
    written = script.quant_config(cmd.argv[2:], _hf_config(hf))  # the script's argparse accepts every flag
    assert written["quant_algo"] == engine_quant_algo(quant) == "W4A16_GPTQ"
    assert (written["group_size"], written["has_zero_point"]) == (128, True)
    assert written.get("use_autoawq", False) is (fmt == "awq")


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_trt_engine_row_agrees_with_the_recorded_script(fmt, engine_config, tmp_path):
    """Accepted: the script turns the checkpoint's own quantization into a QuantConfig. Refused: the script would fail
    on it, or read nothing and convert packed/FP8 weights as if they were full precision."""
    hf = write_checkpoint_configs(tmp_path / fmt, fmt)
    quant = read_checkpoint_quant(hf)
    try:
        accepted = check_prequantized("trt-engine", quant, engine_config) is not None or quant is None
    except SourceError:
        accepted = False
    flags = convert_flags(quant) if accepted else []
    try:
        written = script.quant_config(["--model_dir", str(hf), *flags], _hf_config(hf))["quant_algo"]
    except script.ScriptError:
        written = "script error"
    if fmt == "full-precision":
        assert accepted and written is None
    elif accepted:
        assert written == "W4A16_GPTQ"
    elif fmt not in REFUSED_BY_TRTPIPE_NOT_THE_SCRIPT:
        assert written in (None, "script error"), f"{fmt}: the script reads it ({written}); the table refuses it"


@pytest.mark.parametrize("fmt, why, fix", [
    ("gptq-act-order", "GPTQ with desc_act=True is not implemented", "use backend reference, which serve"),
    ("gptq-v2", "not gptq_v2", "use backend reference"),
    ("modelopt-fp8", "not in the trt-engine backend's list (TensorRT-LLM 1.1.0 examples/models/core/llama/"
                     "convert_checkpoint.py)", "use backend reference or trtllm-pytorch"),
    ("modelopt-nvfp4", "not in the trt-engine backend's list", "use backend trtllm-pytorch"),
    ("compressed-tensors-fp8", "not in the trt-engine backend's list", "use backend reference,"),
])
def test_formats_the_script_cannot_take_are_refused_naming_the_backends_that_serve_them(fmt, why, fix, engine_config,
                                                                                        tmp_path):
    hf = write_checkpoint_configs(tmp_path / fmt, fmt)
    with pytest.raises(SourceError) as e:
        read_checked(engine_config, hf)
    message = str(e.value)
    assert "the trt-engine backend cannot serve this checkpoint's quantization" in message
    assert why in message and fix in message
    assert "trt-engine serves AutoAWQ int4 (grouped), GPTQ int4 (v1, grouped, no act-order)" in message
    assert e.value.exit_code == 4


def test_quantization_on_a_checkpoint_that_is_already_quantized_is_refused_on_every_backend(tmp_path):
    hf = write_checkpoint_configs(tmp_path / "gptq", "gptq")
    quant = read_checkpoint_quant(hf)
    for name, config in (("trt-engine", load_config("llama-8b")), ("trtllm-pytorch", load_config("llama-8b-pytorch")),
                         ("reference", load_config("tiny-llama", ["quantization.format=int4_wo"]))):
        with pytest.raises(ConfigError, match=r"already quantized \(gptq int4 .*would quantize it again") as e:
            check_prequantized(name, quant, config)
        assert "drop `quantization:`" in str(e.value) and e.value.exit_code == 3


def test_an_engine_from_a_quantized_checkpoint_must_report_its_quant_algo(engine_config, tmp_path):
    int4 = write_engine_dir(tmp_path / "int4", quant={"quant_algo": "W4A16_GPTQ", "kv_cache_quant_algo": None})
    limits = verify_engine_dir(int4, engine_config, checkpoint_quant_algo="W4A16_GPTQ")
    assert limits["quant_algo"] == "W4A16_GPTQ"
    with pytest.raises(StageError, match="the engine is quantized"):
        verify_engine_dir(int4, engine_config)  # from a full-precision checkpoint it would be a mix-up
    fp8 = write_engine_dir(tmp_path / "fp8", quant={"kv_cache_quant_algo": None})
    with pytest.raises(StageError, match="quant_algo is FP8, expected W4A16_GPTQ for the checkpoint's own"):
        verify_engine_dir(fp8, engine_config, checkpoint_quant_algo="W4A16_GPTQ")


def test_the_convert_stage_checks_records_and_converts_what_fetch_brought(engine_config, tmp_path, monkeypatch):
    from trtpipe.backends import tensorrt_engine

    monkeypatch.setenv("TRTPIPE_PYTHON", "python3")
    monkeypatch.setenv("TRTPIPE_TRTLLM_EXAMPLES", "/app/examples")
    hf = write_checkpoint_configs(tmp_path / "fetch", "awq")
    inputs = {"fetch": Artifact("fetch", "f" * 64, hf)}
    check, convert = tensorrt_engine._convert_plan(engine_config, inputs, tmp_path / "out")
    assert isinstance(check, Verify) and isinstance(convert, RunCommand)
    meta = check.run()["prequantized"]
    assert meta["scheme"] == "int4-awq" and meta["method"] == "awq"
    assert meta["support_table"] == capabilities("trt-engine").prequantized_source
    assert "TensorRT-LLM 1.1.0" in meta["support_table"]
    assert convert.command.argv[-6:] == ["--use_weight_only", "--weight_only_precision", "int4_gptq", "--per_group",
                                         "--group_size", "128"]
    inputs["quantize"] = Artifact("quantize", "q" * 64, tmp_path / "ckpt")
    *_, verify = tensorrt_engine._compile_plan(engine_config, inputs, tmp_path / "engine")
    assert "quant_algo W4A16_GPTQ" in " ".join(verify.describe())


def test_before_fetch_has_run_the_plan_describes_the_check_and_reads_nothing(engine_config, tmp_path):
    from trtpipe.backends import tensorrt_engine

    check, convert = tensorrt_engine._convert_plan(engine_config, {"fetch": Artifact("fetch", "x", tmp_path / "none")},
                                                   tmp_path / "out")
    assert "otherwise refused here" in check.describe()[0]
    assert "--use_weight_only" not in convert.command.argv
    assert check.run() == {"prequantized": None}


def test_both_gpu_backends_check_the_format_fetch_read_and_a_local_source_at_preflight(tmp_path, monkeypatch):
    """check_checkpoint_quant is what the build asks each backend right after fetch; preflight_build reads a local
    source's config files first, so the refusal comes before the machine checks (this host has no GPU)."""
    from trtpipe.backend_registry import get_backend

    hf = write_checkpoint_configs(tmp_path / "ckpt", "modelopt-nvfp4")
    quant = read_checkpoint_quant(hf)
    trt_engine, pytorch = get_backend("trt-engine"), get_backend("trtllm-pytorch")
    pytorch.check_checkpoint_quant(load_config("llama-8b-pytorch", ["quantization=null"]), quant)
    pytorch.check_checkpoint_quant(load_config("llama-8b-pytorch"), None)
    config = load_config("llama-8b", ["quantization=null", f"source.path={hf}", "source.hf=null",
                                      "source.revision=null"])
    with pytest.raises(SourceError, match="the trt-engine backend cannot serve .*modelopt:NVFP4"):
        trt_engine.check_checkpoint_quant(config, quant)
    with pytest.raises(SourceError, match="use backend trtllm-pytorch"):
        trt_engine.preflight_build(config)
