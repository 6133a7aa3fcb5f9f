"""The config files of checkpoints that come quantized, as each format's producer writes them (AutoAWQ, AutoGPTQ /
GPTQModel, llm-compressor's compressed-tensors, transformers' FineGrainedFP8, ModelOpt's unified export), for the GPU
backends' tests. Those backends read only these files at build time (the weights go to TensorRT-LLM untouched), so
no weights are written here; the reference engine's tests build real packed weights for the same formats."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LLAMA = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336,
         "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8, "vocab_size": 128256,
         "torch_dtype": "float16"}

QUANTIZATION_CONFIGS: dict[str, dict[str, Any]] = {
    "awq": {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"},
    "gptq": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
             "checkpoint_format": "gptq"},
    "gptq-act-order": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True},
    "gptq-v2": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False, "sym": True,
                "checkpoint_format": "gptq_v2"},
    "awq-per-channel": {"quant_method": "awq", "bits": 4, "group_size": -1, "zero_point": True, "version": "gemm"},
    "compressed-tensors-fp8": {
        "quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
        "config_groups": {"group_0": {"targets": ["Linear"],
                                      "weights": {"type": "float", "num_bits": 8, "strategy": "channel"},
                                      "input_activations": {"type": "float", "num_bits": 8, "dynamic": True}}}},
    "hf-fp8-block": {"quant_method": "fp8", "weight_block_size": [128, 128], "activation_scheme": "dynamic"},
    "hf-fp8-block-64": {"quant_method": "fp8", "weight_block_size": [64, 64], "activation_scheme": "dynamic"},
    # transformers reads an absent weight_block_size as (128, 128), an explicit null as one scale per tensor.
    "hf-fp8-no-block-key": {"quant_method": "fp8", "activation_scheme": "dynamic"},
    "hf-fp8-tensor": {"quant_method": "fp8", "weight_block_size": None, "activation_scheme": "dynamic"},
    # ModelOpt's export also names itself in config.json; without hf_quant_config.json beside it.
    "modelopt-fp8-config-json-only": {"quant_method": "modelopt", "quant_algo": "FP8", "kv_cache_quant_algo": None},
}
MODELOPT_CONFIGS: dict[str, dict[str, Any]] = {
    "modelopt-fp8": {"quant_algo": "FP8", "kv_cache_quant_algo": None, "exclude_modules": ["lm_head"]},
    "modelopt-fp8-kv": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]},
    "modelopt-nvfp4": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                       "exclude_modules": ["lm_head"]},
    "modelopt-w4a16-awq": {"quant_algo": "W4A16_AWQ", "kv_cache_quant_algo": None, "group_size": 128,
                           "has_zero_point": False, "pre_quant_scale": True, "exclude_modules": ["lm_head"]},
}
FORMATS = ("full-precision", *QUANTIZATION_CONFIGS, *MODELOPT_CONFIGS)


def write_checkpoint_configs(directory: Path, fmt: str) -> Path:
    """config.json (and hf_quant_config.json for a ModelOpt export) of a Llama-3.1-8B-shaped checkpoint in `fmt`."""
    directory.mkdir(parents=True, exist_ok=True)
    config = dict(LLAMA)
    if fmt in QUANTIZATION_CONFIGS:
        config["quantization_config"] = QUANTIZATION_CONFIGS[fmt]
    elif fmt in MODELOPT_CONFIGS:
        (directory / "hf_quant_config.json").write_text(json.dumps(
            {"producer": {"name": "modelopt", "version": "0.37.0"}, "quantization": MODELOPT_CONFIGS[fmt]}))
    elif fmt != "full-precision":
        raise KeyError(fmt)
    (directory / "config.json").write_text(json.dumps(config))
    return directory
