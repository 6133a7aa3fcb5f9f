"""Checkpoints that arrive quantized, on the GPU backends: read the checkpoint's own quantization after fetch, check it
against the backend's table (backend_registry.py `prequantized`, copied from the pinned TensorRT-LLM's loaders), and
say what that means for the tools: the convert_checkpoint.py flags (trt-engine), the quant_algo the engine must then
report, the KV-cache dtype the LLM API is given (trtllm-pytorch).

Nothing here runs a tool. Where the facts come from (TensorRT-LLM 1.1.0, the pinned image's):
- examples/models/core/llama/convert_checkpoint.py (read in a 2026 tree; the AutoAWQ/GPTQ reading dates from
  NVIDIA/TensorRT-LLM issue #2458's 2024-12 update, so 1.1.0 has it): `update_quant_config_from_hf` reads config.json's
  quantization_config whatever the flags say: quant_method "awq" -> QuantAlgo.W4A16_GPTQ with use_autoawq and
  has_zero_point from `zero_point`; "gptq" -> W4A16_GPTQ (desc_act true raises "GPTQ with desc_act=True is not
  implemented!"), group_size from the checkpoint. The flags trtpipe passes say the same explicitly (argparse:
  `--use_weight_only`, `--weight_only_precision {int8,int4,int8_gptq,int4_gptq,int4_awq}`, `--per_group` "built for
  GPTQ/AWQ quantization", `--group_size` "Group size used in GPTQ quantization"). NOTE: int4_awq is not passed for
  AutoAWQ: precision_to_config("int4_awq") sets pre_quant_scale (ModelOpt's AWQ layout), which the HF override keeps.
- tensorrt_llm/_torch/model_config.py (read at 1.1.0rc6): `ModelConfig.from_pretrained` takes hf_quant_config.json's
  quant_algo and kv_cache_quant_algo (load_modelopt_quant_config), else quantization_config (load_hf_quant_config).
  The LLM API docs (features/quantization, 1.0.0 and 1.2.0rc6 alike): "TensorRT LLM can directly run pre-quantized
  models generated with the NVIDIA Model Optimizer", and KvCacheConfig(dtype='fp8') sets an FP8 KV cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe.backend_registry import Prequantized, capabilities, check_prequantized
from trtpipe.config import BuildConfig
from trtpipe.engine.checkpoint_quant import CheckpointQuant, read_checkpoint_quant

# CheckpointQuant.scheme -> the TensorRT-LLM QuantAlgo a trt-engine checkpoint (and engine) converted from it reports.
ENGINE_QUANT_ALGO = {"int4-awq": "W4A16_GPTQ", "int4-gptq": "W4A16_GPTQ"}


def read_checked(config: BuildConfig, hf_dir: Path) -> tuple[CheckpointQuant | None, Prequantized | None]:
    """The fetched checkpoint's own quantization and the backend row that serves it; refuses (ConfigError) what the
    config's backend cannot serve as it is, and a `quantization:` section on a quantized checkpoint."""
    quant = read_checkpoint_quant(hf_dir)
    return quant, check_prequantized(config.backend, quant, config)


def check_local_source(config: BuildConfig) -> None:
    """For a `source.path` checkpoint, whose config files are readable before fetch: refuse its format at preflight,
    before anything is copied or any machine is checked. Hub sources are checked after fetch."""
    path = Path(config.source.path).expanduser() if config.source.path else None
    if path is not None and fetched(path):
        read_checked(config, path)


def fetched(hf_dir: Path) -> bool:
    """Whether the checkpoint is there to read (a dry run may plan a stage before fetch has run)."""
    return (Path(hf_dir) / "config.json").is_file()


def record(config: BuildConfig, quant: CheckpointQuant | None, row: Prequantized | None) -> dict[str, Any]:
    """For the stage's metadata (and so the manifest): what the checkpoint carries, how this backend takes it and
    which version's support table said so."""
    if quant is None:
        return {"prequantized": None}
    return {"prequantized": {"scheme": quant.scheme, "method": quant.method, "describe": quant.describe(),
                             "how": row.how, "support_table": capabilities(config.backend).prequantized_source,
                             "min_compute_capability": list(row.min_compute_capability)
                             if row.min_compute_capability else None}}


def describe_check(config: BuildConfig) -> str:
    """The dry run's line for the check."""
    caps = capabilities(config.backend)
    return (f"check: the fetched checkpoint's own quantization (config.json quantization_config, hf_quant_config.json; "
            f"engine/checkpoint_quant.py) is full precision or one the {caps.name} backend serves as it is, per "
            f"{caps.prequantized_source}; otherwise refused here")


def convert_flags(quant: CheckpointQuant | None) -> list[str]:
    """convert_checkpoint.py flags for a checkpoint that is already INT4 (AutoAWQ or GPTQ): the weight-only GPTQ
    path, whose loader the script points at the checkpoint's own packed weights. [] for full precision."""
    if quant is None:
        return []
    return ["--use_weight_only", "--weight_only_precision", "int4_gptq", "--per_group",
            "--group_size", str(quant.group_size)]


def engine_quant_algo(quant: CheckpointQuant | None) -> str | None:
    """The quant_algo the TensorRT-LLM checkpoint and engine built from this checkpoint must report."""
    return ENGINE_QUANT_ALGO.get(quant.scheme) if quant is not None else None


def kv_cache_dtype(quant: CheckpointQuant | None) -> str | None:
    """The KV-cache dtype the LLM API is given for a checkpoint that asks for a quantized KV cache itself (written
    explicitly rather than left to "auto", as every default trtpipe relies on)."""
    return quant.kv_cache if quant is not None and quant.kv_cache == "fp8" else None
