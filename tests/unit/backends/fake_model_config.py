"""A recorded stand-in for how TensorRT-LLM 1.1's PyTorch backend (the LLM API) reads a Hugging Face checkpoint's own
quantization: `tensorrt_llm._torch.model_config.ModelConfig.from_pretrained` and the loaders it calls. It loads no
weights and runs no TensorRT-LLM; it answers "which QuantConfig would the LLM API build for this checkpoint
directory?", written from the source, not from trtpipe's table (backend_registry.py), so the two can disagree and a
test then fails.

Read from tensorrt_llm/_torch/model_config.py at 1.1.0rc6 (the upstream side of a fork merge, Ataraksia/TensorRT-LLM
@a451bf9, whose tensorrt_llm/version.py says 1.1.0rc6; 1.1.0 was released from that branch, and that these loaders
did not change between rc6 and 1.1.0 is inference). Later trees also read compressed-tensors and
`modules_to_not_convert`; this one does not:
- hf_quant_config.json present -> load_modelopt_quant_config: quant_algo, kv_cache_quant_algo, group_size and
  exclude_modules from its "quantization" object ("fp8_pb_wo" is renamed FP8_BLOCK_SCALES; MIXED_PRECISION reads
  quant_cfg.json).
- else config.json quantization_config -> load_hf_quant_config: quant_method "fp8" with a weight_block_size ->
  FP8_BLOCK_SCALES, asserting "FP8_BLOCK_SCALES only supports block_size=(128,128)"; quant_method "mxfp4" -> an MXFP4
  algo picked by GPU; anything else -> QuantConfig() with quant_algo None, i.e. the weights are loaded as if they
  were full precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class LoaderAssertion(AssertionError):
    """An assertion the loader would raise."""


def quant_config(checkpoint_dir: Path) -> dict[str, Any]:
    checkpoint_dir = Path(checkpoint_dir)
    modelopt = checkpoint_dir / "hf_quant_config.json"
    if modelopt.exists():
        q = json.loads(modelopt.read_text())["quantization"]
        algo = q.get("quant_algo")
        return {"quant_algo": "FP8_BLOCK_SCALES" if algo == "fp8_pb_wo" else algo,
                "kv_cache_quant_algo": q.get("kv_cache_quant_algo"), "group_size": q.get("group_size"),
                "exclude_modules": q.get("exclude_modules")}
    hf_q = json.loads((checkpoint_dir / "config.json").read_text()).get("quantization_config")
    empty = {"quant_algo": None, "kv_cache_quant_algo": None, "group_size": None, "exclude_modules": None}
    if hf_q is None:
        return empty
    if hf_q.get("quant_method") == "fp8" and hf_q.get("weight_block_size", []):
        if tuple(hf_q["weight_block_size"]) != (128, 128):
            raise LoaderAssertion("FP8_BLOCK_SCALES only supports block_size=(128,128)")
        return {**empty, "quant_algo": "FP8_BLOCK_SCALES", "group_size": 128, "exclude_modules": ["*eh_proj"]}
    if hf_q.get("quant_method") == "mxfp4":
        return {**empty, "quant_algo": "MXFP4 (W4A16_MXFP4 / W4A8_MXFP4_*, by GPU)", "group_size": 32}
    return empty
