"""The exact TensorRT-LLM commands a BuildConfig turns into: checkpoint conversion, ModelOpt
quantization and trtllm-build.

Nothing here runs a tool. Each function returns a `Command` (argv, cwd, env, output dir) that a stage
runs and records in the manifest, so the commands are pinned by tests without a GPU and can be
re-run by hand inside the pinned image.

Flags were checked against TensorRT-LLM 1.x sources (reference/trtllm-facts.md §1):
examples/models/core/llama/convert_checkpoint.py, examples/quantization/quantize.py,
tensorrt_llm/commands/build.py and tensorrt_llm/plugin/plugin.py (the PluginConfig behind the
`--<plugin>` flags). Defaults we rely on are passed explicitly anyway, so a changed default upstream
cannot silently change an engine.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trtpipe.config import BuildConfig
from trtpipe.errors import ConfigError
from trtpipe.stages.steps import Command  # noqa: F401 - part of this module's interface (plan_report, tests)
from trtpipe.trt.prequantized import convert_flags
from trtpipe.trt.toolchain import PINNED

if TYPE_CHECKING:
    from trtpipe.engine.checkpoint_quant import CheckpointQuant

# The toolchain every trt-engine artifact is built and tested with, from the one table (trt/toolchain.py). Part of
# every GPU stage's cache key.
TOOLCHAIN = {
    "image": PINNED.image,
    "tensorrt_llm": PINNED.tensorrt_llm,
    "tensorrt": PINNED.tensorrt_major_minor,
    "modelopt": PINNED.modelopt,  # 0.49 drops export_tensorrt_llm_checkpoint, which quantize.py needs (facts §0)
}
IMAGE = TOOLCHAIN["image"]

# Formats that need calibration go through ModelOpt (quantize.py); weight-only formats through
# convert_checkpoint.py, which quantizes weights without calibration data.
MODELOPT_FORMATS = ("fp8", "int4_awq", "w4a8_awq", "int8_sq")
WEIGHT_ONLY_PRECISION = {"int8_wo": "int8", "int4_wo": "int4"}
# Quantization algorithms whose engines keep FP8 context FMHA, which paged context FMHA needs when the
# KV cache is FP8 (tensorrt_llm/builder.py build()).
FP8_ATTENTION_FORMATS = ("fp8", "w4a8_awq")
# convert_checkpoint.py names the calibration set by its Hugging Face id; quantize.py by a short name.
CONVERT_CALIB_DATASETS = {"cnn_dailymail": "ccdv/cnn_dailymail"}


def _env_default(var: str, default: str):
    return field(default_factory=lambda: os.environ.get(var) or default)


@dataclass(frozen=True)
class TrtTools:
    """Where the TensorRT-LLM tools live. Defaults are the NGC image layout (/app holds the examples,
    scripts and model templates; trtllm-build and mpirun are on PATH). `TrtTools()` reads an override
    for each from the environment, for other installs; explicit arguments win over both."""

    python: str = _env_default("TRTPIPE_PYTHON", "python3")
    examples_dir: str = _env_default("TRTPIPE_TRTLLM_EXAMPLES", "/app/examples")
    # The inflight_batcher_llm templates whose preprocessing/postprocessing model.py publish copies.
    models_dir: str = _env_default("TRTPIPE_TRTLLM_MODELS", "/app/all_models/inflight_batcher_llm")
    trtllm_build: str = _env_default("TRTPIPE_TRTLLM_BUILD", "trtllm-build")
    tritonserver: str = _env_default("TRTPIPE_TRITONSERVER", "/opt/tritonserver/bin/tritonserver")
    mpirun: str = _env_default("TRTPIPE_MPIRUN", "mpirun")

    @property
    def convert_script(self) -> str:
        return f"{self.examples_dir}/models/core/llama/convert_checkpoint.py"

    @property
    def quantize_script(self) -> str:
        return f"{self.examples_dir}/quantization/quantize.py"

    @property
    def xgrammar_tokenizer_info_script(self) -> str:
        """Writes the tokenizer info the tensorrtllm C++ backend's xgrammar guided decoding loads (trt/guided_decoding.py)."""
        return f"{self.examples_dir}/generate_xgrammar_tokenizer_info.py"

    def upstream_model_py(self, kind: str) -> str:
        """The image's Python model for `preprocessing` or `postprocessing`."""
        return f"{self.models_dir}/{kind}/1/model.py"


def uses_modelopt(config: BuildConfig) -> bool:
    return config.quantization is not None and config.quantization.format in MODELOPT_FORMATS


def paged_context_fmha_loss(config: BuildConfig) -> str | None:
    """Why trtllm-build would silently turn paged context FMHA off for this config, or None.

    TensorRT-LLM 1.x disables it for an INT8 KV cache, and for an FP8 KV cache unless the weights are
    FP8 or W4A8 (FP8 context FMHA is then unavailable). KV-cache reuse, chunked context and draft-token
    verification all need it, so such a config is refused rather than built into a slower engine.
    """
    q = config.quantization
    if q is None or q.kv_cache_dtype is None:
        return None
    if q.kv_cache_dtype == "int8":
        return "an int8 KV cache disables paged context FMHA"
    if q.format not in FP8_ATTENTION_FORMATS:
        return f"an fp8 KV cache with format {q.format} disables paged context FMHA (it needs fp8 or w4a8_awq weights)"
    return None


def check_trt_config(config: BuildConfig) -> None:
    """Refuse trt-engine configs that TensorRT-LLM would build into something other than what was asked."""
    if config.backend != "trt-engine":
        raise ConfigError(f"backend is {config.backend!r}; TensorRT-LLM commands are only for trt-engine",
                          where=f"{config.name}: backend", fix="set backend: trt-engine")
    if config.dtype == "float32" and config.quantization is None:
        raise ConfigError("a float32 engine is not a serving configuration", where=f"{config.name}: dtype",
                          fix="use bfloat16 or float16")
    loss = paged_context_fmha_loss(config)
    needs = [name for name, on in (("serving.enable_kv_cache_reuse", config.serving.enable_kv_cache_reuse),
                                   ("serving.enable_chunked_context", config.serving.enable_chunked_context),
                                   ("speculation", config.speculation is not None)) if on]
    if loss and needs:
        raise ConfigError(f"{loss}, which {', '.join(needs)} need(s)", where=f"{config.name}: quantization",
                          fix="use format fp8 with kv_cache_dtype fp8, drop kv_cache_dtype, or turn those off")
    if config.speculation is not None and not config.serving.enable_kv_cache_reuse:
        # Each verification step re-sends the sequence; without block reuse every step re-runs the prefill.
        raise ConfigError("draft-target speculation needs KV-cache reuse", where=f"{config.name}: serving",
                          fix="set serving.enable_kv_cache_reuse: true")


def _parallel_flags(config: BuildConfig) -> list[str]:
    return ["--tp_size", str(config.parallelism.tp), "--pp_size", str(config.parallelism.pp)]


def convert_command(config: BuildConfig, checkpoint_dir: Path, out_dir: Path, tools: TrtTools,
                    prequant: "CheckpointQuant | None" = None) -> Command:
    """HF checkpoint -> TensorRT-LLM checkpoint (config.json + rank{N}.safetensors), unquantized or
    weight-only (int8_wo -> W8A16, int4_wo -> W4A16, per channel). `prequant`: the checkpoint's own INT4 quantization
    (AutoAWQ or GPTQ), already checked against the backend's table (trt/prequantized.py): converted as it is."""
    check_trt_config(config)
    if uses_modelopt(config):
        raise ConfigError(f"quantization.format {config.quantization.format} needs calibration",
                          where=f"{config.name}: quantization.format", fix="use quantize_command (ModelOpt)")
    argv = [tools.python, tools.convert_script, "--model_dir", str(checkpoint_dir), "--output_dir", str(out_dir),
            "--dtype", config.dtype, *_parallel_flags(config)]
    q = config.quantization
    env = {"HF_HUB_OFFLINE": "1"}  # conversion reads the local snapshot only
    argv += convert_flags(prequant)
    if q is not None:
        argv += ["--use_weight_only", "--weight_only_precision", WEIGHT_ONLY_PRECISION[q.format]]
        if q.kv_cache_dtype == "int8":
            # INT8 KV scales are calibrated by convert_checkpoint itself, which downloads the dataset.
            argv += ["--int8_kv_cache",
                     "--calib_dataset", CONVERT_CALIB_DATASETS.get(q.calibration.dataset, q.calibration.dataset),
                     "--calib_size", str(q.calibration.size)]
            env = {}
        elif q.kv_cache_dtype == "fp8":
            raise ConfigError("an fp8 KV cache needs calibrated scales, which weight-only conversion does not make",
                              where=f"{config.name}: quantization.kv_cache_dtype",
                              fix="use format fp8 (ModelOpt) for an fp8 KV cache, or drop kv_cache_dtype")
    return Command(argv=argv, env=env, produces=str(out_dir),
                   description=f"convert {config.name} to a TensorRT-LLM checkpoint "
                               f"({config.dtype}{', ' + q.format if q else ''}"
                               f"{', as quantized: ' + prequant.describe() if prequant else ''}, "
                               f"tp={config.parallelism.tp}, "
                               f"pp={config.parallelism.pp})")


def quantize_command(config: BuildConfig, checkpoint_dir: Path, out_dir: Path, tools: TrtTools) -> Command:
    """HF checkpoint -> calibrated, quantized TensorRT-LLM checkpoint via ModelOpt (quantize.py)."""
    check_trt_config(config)
    q = config.quantization
    if not uses_modelopt(config):
        fmt = q.format if q else "none"
        raise ConfigError(f"quantization.format {fmt} is not a ModelOpt format",
                          where=f"{config.name}: quantization.format",
                          fix=f"use convert_command; ModelOpt formats are {', '.join(MODELOPT_FORMATS)}")
    argv = [tools.python, tools.quantize_script, "--model_dir", str(checkpoint_dir), "--output_dir", str(out_dir),
            "--dtype", config.dtype, "--qformat", q.format]
    if q.kv_cache_dtype:
        argv += ["--kv_cache_dtype", q.kv_cache_dtype]
    if q.format in ("int4_awq", "w4a8_awq"):
        argv += ["--awq_block_size", str(q.group_size)]
    argv += ["--calib_dataset", q.calibration.dataset, "--calib_size", str(q.calibration.size),
             "--seed", str(q.calibration.seed), *_parallel_flags(config)]
    return Command(argv=argv, env={}, produces=str(out_dir),
                   description=f"calibrate and quantize {config.name} with ModelOpt ({q.format}, kv "
                               f"{q.kv_cache_dtype or config.dtype}, {q.calibration.size} samples of "
                               f"{q.calibration.dataset})")


def checkpoint_command(config: BuildConfig, checkpoint_dir: Path, out_dir: Path, tools: TrtTools,
                       prequant: "CheckpointQuant | None" = None) -> Command:
    if uses_modelopt(config):
        return quantize_command(config, checkpoint_dir, out_dir, tools)
    return convert_command(config, checkpoint_dir, out_dir, tools, prequant)


def build_commands(config: BuildConfig, trt_checkpoint_dir: Path, engine_dir: Path, tools: TrtTools, *,
                   draft: bool = False) -> list[Command]:
    """trtllm-build for the target (with draft-token verification when config.speculation is set) or,
    with draft=True, for a draft model (a plain engine: trtpipe verifies by tokens, not draft logits)."""
    check_trt_config(config)
    e = config.engine
    q = config.quantization
    argv = [tools.trtllm_build, "--checkpoint_dir", str(trt_checkpoint_dir), "--output_dir", str(engine_dir),
            "--max_batch_size", str(e.max_batch_size), "--max_input_len", str(e.max_input_len),
            "--max_seq_len", str(e.max_seq_len), "--max_num_tokens", str(e.max_num_tokens),
            "--max_beam_width", "1",
            # In-flight batching needs the paged KV cache, the attention plugin and packed inputs.
            "--kv_cache_type", "paged", "--tokens_per_block", str(e.tokens_per_block),
            "--gpt_attention_plugin", "auto", "--gemm_plugin", "auto",
            "--remove_input_padding", "enable", "--context_fmha", "enable",
            # Block reuse, chunked context and draft verification all run through paged context FMHA.
            "--use_paged_context_fmha", "enable"]
    if q is not None and q.format in FP8_ATTENTION_FORMATS:
        argv += ["--use_fp8_context_fmha", "enable"]
    if config.speculation is not None and not draft:
        # NOTE: trtllm-build adds max_draft_len to max_seq_len itself; verify_engine_dir expects that.
        argv += ["--speculative_decoding_mode", "draft_tokens_external",
                 "--max_draft_len", str(config.speculation.max_draft_len)]
    # The timing cache would otherwise land in the working directory as model.cache.
    argv += ["--output_timing_cache", str(Path(engine_dir) / "timing.cache"),
             "--workers", str(config.parallelism.world_size)]
    role = "draft engine" if draft else ("target engine" if config.speculation else "engine")
    return [Command(argv=argv, env={}, produces=str(engine_dir),
                    description=f"build the {config.name} {role} (batch {e.max_batch_size}, seq {e.max_seq_len}, "
                                f"{config.parallelism.world_size} rank(s))")]
