"""The exact TensorRT-LLM command lines trtpipe would run for its build configs.

These tests pin the argv we would hand to convert_checkpoint.py, quantize.py and trtllm-build (flags as
read in TensorRT-LLM 1.x's argparse definitions); they do not run TensorRT-LLM, which needs a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trtpipe.config import load_config
from trtpipe.errors import ConfigError
from trtpipe.trt.recipes import (TOOLCHAIN, TrtTools, build_commands, checkpoint_command, convert_command,
                                 quantize_command)

HF, CKPT, ENG = Path("/cache/hf"), Path("/cache/ckpt"), Path("/cache/engine")

BUILD_COMMON = ["--kv_cache_type", "paged", "--tokens_per_block", "32", "--gpt_attention_plugin", "auto",
                "--gemm_plugin", "auto", "--remove_input_padding", "enable", "--context_fmha", "enable",
                "--use_paged_context_fmha", "enable"]


def test_llama_8b_quantizes_fp8_with_fp8_kv_cache_through_modelopt(llama_8b, tools):
    cmd = quantize_command(llama_8b, HF, CKPT, tools)
    assert cmd.argv == [
        "python3", "/app/examples/quantization/quantize.py", "--model_dir", "/cache/hf", "--output_dir", "/cache/ckpt",
        "--dtype", "bfloat16", "--qformat", "fp8", "--kv_cache_dtype", "fp8",
        "--calib_dataset", "cnn_dailymail", "--calib_size", "512", "--seed", "0", "--tp_size", "1", "--pp_size", "1"]
    assert cmd.produces == "/cache/ckpt" and cmd.env == {} and cmd.cwd is None
    assert checkpoint_command(llama_8b, HF, CKPT, tools).argv == cmd.argv


def test_llama_8b_target_build_verifies_external_draft_tokens(llama_8b, tools):
    [cmd] = build_commands(llama_8b, CKPT, ENG, tools)
    assert cmd.argv == [
        "trtllm-build", "--checkpoint_dir", "/cache/ckpt", "--output_dir", "/cache/engine",
        "--max_batch_size", "64", "--max_input_len", "7168", "--max_seq_len", "8192", "--max_num_tokens", "8192",
        "--max_beam_width", "1", *BUILD_COMMON, "--use_fp8_context_fmha", "enable",
        "--speculative_decoding_mode", "draft_tokens_external", "--max_draft_len", "4",
        "--output_timing_cache", "/cache/engine/timing.cache", "--workers", "1"]
    assert cmd.produces == "/cache/engine"


def test_draft_engine_is_built_without_speculation_flags(draft_1b, llama_8b, tools):
    [cmd] = build_commands(draft_1b, CKPT, ENG, tools, draft=True)
    assert "--speculative_decoding_mode" not in cmd.argv and "--max_draft_len" not in cmd.argv
    assert cmd.argv[cmd.argv.index("--max_seq_len") + 1] == "8192"
    # draft=True also strips speculation from a config that has it (building a target's config as a draft).
    [as_draft] = build_commands(llama_8b, CKPT, ENG, tools, draft=True)
    assert "--speculative_decoding_mode" not in as_draft.argv


def test_llama_70b_is_quantized_and_built_for_tp4(llama_70b, tools):
    q = quantize_command(llama_70b, HF, CKPT, tools)
    assert q.argv[-4:] == ["--tp_size", "4", "--pp_size", "1"]
    [b] = build_commands(llama_70b, CKPT, ENG, tools)
    assert b.argv == [
        "trtllm-build", "--checkpoint_dir", "/cache/ckpt", "--output_dir", "/cache/engine",
        "--max_batch_size", "128", "--max_input_len", "7168", "--max_seq_len", "8192", "--max_num_tokens", "8192",
        "--max_beam_width", "1", *BUILD_COMMON, "--use_fp8_context_fmha", "enable",
        "--output_timing_cache", "/cache/engine/timing.cache", "--workers", "4"]


@pytest.mark.parametrize("fmt, precision", [("int8_wo", "int8"), ("int4_wo", "int4")])
def test_weight_only_formats_convert_without_calibration(fmt, precision, tools):
    cfg = load_config("llama-8b", [f"quantization.format={fmt}", "quantization.kv_cache_dtype=null",
                                   "parallelism.tp=2"])
    cmd = convert_command(cfg, HF, CKPT, tools)
    assert cmd.argv == [
        "python3", "/app/examples/models/core/llama/convert_checkpoint.py", "--model_dir", "/cache/hf",
        "--output_dir", "/cache/ckpt", "--dtype", "bfloat16", "--tp_size", "2", "--pp_size", "1",
        "--use_weight_only", "--weight_only_precision", precision]
    assert cmd.env == {"HF_HUB_OFFLINE": "1"}  # conversion of a local snapshot needs no network
    [b] = build_commands(cfg, CKPT, ENG, tools)
    assert "--use_fp8_context_fmha" not in b.argv  # only FP8 / W4A8 weights keep FP8 context FMHA


def test_unquantized_config_converts_in_its_dtype(tools):
    cfg = load_config("llama-8b", ["quantization=null", "dtype=float16"])
    assert convert_command(cfg, HF, CKPT, tools).argv[6:] == ["--dtype", "float16", "--tp_size", "1",
                                                              "--pp_size", "1"]


def test_awq_passes_its_group_size_as_the_awq_block_size(tools):
    cfg = load_config("llama-8b", ["quantization.format=w4a8_awq", "quantization.group_size=64"])
    argv = quantize_command(cfg, HF, CKPT, tools).argv
    assert argv[argv.index("--qformat") + 1] == "w4a8_awq"
    assert argv[argv.index("--awq_block_size") + 1] == "64"


def test_convert_refuses_formats_that_need_calibration(llama_8b, tools):
    with pytest.raises(ConfigError, match="needs calibration"):
        convert_command(llama_8b, HF, CKPT, tools)


def test_quantize_refuses_weight_only_formats(tools):
    cfg = load_config("llama-8b", ["quantization.format=int8_wo", "quantization.kv_cache_dtype=null"])
    with pytest.raises(ConfigError, match="not a ModelOpt format"):
        quantize_command(cfg, HF, CKPT, tools)


def test_int8_kv_cache_is_refused_when_reuse_needs_paged_context_fmha(tools):
    cfg = load_config("llama-8b", ["quantization.kv_cache_dtype=int8"])
    with pytest.raises(ConfigError, match="int8 KV cache disables paged context FMHA") as e:
        build_commands(cfg, CKPT, ENG, tools)
    assert "serving.enable_kv_cache_reuse" in str(e.value) and "speculation" in str(e.value)


def test_fp8_kv_cache_with_int4_awq_weights_is_refused(tools):
    cfg = load_config("llama-8b", ["quantization.format=int4_awq"])
    with pytest.raises(ConfigError, match="fp8 KV cache with format int4_awq"):
        quantize_command(cfg, HF, CKPT, tools)


def test_speculation_without_kv_reuse_is_refused(tools):
    cfg = load_config("llama-8b", ["serving.enable_kv_cache_reuse=false"])
    with pytest.raises(ConfigError, match="needs KV-cache reuse"):
        build_commands(cfg, CKPT, ENG, tools)


def test_reference_backend_has_no_tensorrt_llm_commands(tools):
    with pytest.raises(ConfigError, match="only for trt-engine"):
        build_commands(load_config("tiny-llama"), CKPT, ENG, tools)


def test_tool_locations_default_to_the_ngc_image_and_follow_the_environment(monkeypatch):
    for var in ("TRTPIPE_PYTHON", "TRTPIPE_TRTLLM_EXAMPLES", "TRTPIPE_TRTLLM_BUILD"):
        monkeypatch.delenv(var, raising=False)
    default = TrtTools()
    assert default.convert_script == "/app/examples/models/core/llama/convert_checkpoint.py"
    assert default.quantize_script == "/app/examples/quantization/quantize.py"
    assert default.trtllm_build == "trtllm-build"
    monkeypatch.setenv("TRTPIPE_TRTLLM_EXAMPLES", "/opt/TensorRT-LLM/examples")
    monkeypatch.setenv("TRTPIPE_TRTLLM_BUILD", "/usr/local/bin/trtllm-build")
    moved = TrtTools()
    assert moved.quantize_script == "/opt/TensorRT-LLM/examples/quantization/quantize.py"
    assert moved.trtllm_build == "/usr/local/bin/trtllm-build"


def test_toolchain_pins_the_image_and_versions():
    assert TOOLCHAIN == {"image": "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3", "tensorrt_llm": "1.1.0",
                         "tensorrt": "10.13", "modelopt": "<0.49"}


def test_command_renders_as_one_pasteable_line(tools):
    cfg = load_config("llama-8b", ["quantization.format=int8_wo", "quantization.kv_cache_dtype=null"])
    line = convert_command(cfg, Path("/my models/hf"), CKPT, tools).shell()
    assert line.startswith("HF_HUB_OFFLINE=1 python3 /app/examples/models/core/llama/convert_checkpoint.py")
    assert "'/my models/hf'" in line
