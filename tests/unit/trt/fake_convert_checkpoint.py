"""A recorded, strict stand-in for TensorRT-LLM's examples/models/core/llama/convert_checkpoint.py: its argparse
(every flag, type and choice as read in the script) and what it makes of a Hugging Face checkpoint's own
quantization. It converts nothing: it answers "would argparse accept this argv?" and "which QuantConfig would the
script write for this argv and this config.json?", so the argv trtpipe generates is checked against the script's
interface rather than against trtpipe's own expectations.

Read from NVIDIA/TensorRT-LLM examples/models/core/llama/convert_checkpoint.py as stored (a 2026 tree, later than the
pinned 1.1.0; it adds only a deprecation warning). The pieces used here date from the AutoAWQ/AutoGPTQ support
announced in NVIDIA/TensorRT-LLM issue #2458 (2024-12-05), so 1.1.0 has them (inference from those dates):
- parse_arguments: `--use_weight_only` (store_true); `--weight_only_precision` choices int8, int4, int8_gptq,
  int4_gptq, int4_awq (default int8); `--per_group` (store_true, "built for GPTQ/AWQ quantization"); `--group_size`
  (int, default 128, "Group size used in GPTQ quantization"); `--quant_ckpt_path`; the rest below.
- precision_to_config: int4_gptq -> W4A16_GPTQ, group_size, has_zero_point True, pre_quant_scale False; int4_awq ->
  W4A16_AWQ, has_zero_point False, pre_quant_scale True.
- update_quant_config_from_hf (always called on a --model_dir checkpoint): quantization_config quant_method "awq" ->
  W4A16_GPTQ, group_size (default 128), has_zero_point = zero_point, use_autoawq; "gptq" -> desc_act true raises
  ValueError("GPTQ with desc_act=True is not implemented!"), else W4A16_GPTQ, group_size, has_zero_point = sym;
  "fbgemm_fp8" -> FP8_PER_CHANNEL_PER_TOKEN. Nothing else is read (no FP8/ModelOpt/compressed-tensors branch).
- main: `--quant_ckpt_path` only with int4_gptq/int8_gptq or --use_qserve.
"""

from __future__ import annotations

import argparse
from typing import Any


class ScriptError(Exception):
    """What the script would exit with (argparse's usage error, an assertion or a ValueError)."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="convert_checkpoint.py", exit_on_error=False, allow_abbrev=False)
    p.add_argument("--model_dir", type=str, default=None)
    p.add_argument("--meta_ckpt_dir", type=str, default=None)
    for name, default in (("--tp_size", 1), ("--pp_size", 1), ("--moe_tp_size", -1), ("--cp_size", 1),
                          ("--moe_ep_size", -1), ("--vocab_size", 32000), ("--n_positions", 2048), ("--n_layer", 32),
                          ("--n_head", 32), ("--n_kv_head", None), ("--n_embd", 4096), ("--inter_size", 11008),
                          ("--multiple_of", None), ("--calib_size", 512), ("--calib_max_seq_length", 512),
                          ("--group_size", 128), ("--embedding_sharding_dim", 0), ("--workers", 1),
                          ("--moe_num_experts", 0), ("--moe_top_k", 0), ("--moe_renorm_mode", 1)):
        kwargs: dict[str, Any] = {"choices": [0, 1]} if name == "--embedding_sharding_dim" else {}
        p.add_argument(name, type=int, default=default, **kwargs)
    p.add_argument("--dtype", type=str, default="auto", choices=["auto", "float16", "bfloat16", "float32"])
    p.add_argument("--ffn_dim_multiplier", type=float, default=None)
    p.add_argument("--rms_norm_eps", type=float, default=1e-06)
    p.add_argument("--weight_only_precision", const="int8", type=str, nargs="?", default="int8",
                   choices=["int8", "int4", "int8_gptq", "int4_gptq", "int4_awq"])
    p.add_argument("--calib_dataset", type=str, default="ccdv/cnn_dailymail")
    p.add_argument("--smoothquant", "-sq", type=float, default=None)
    p.add_argument("--quant_ckpt_path", type=str, default=None)
    p.add_argument("--hidden_act", type=str, default="silu")
    p.add_argument("--rotary_base", type=float, default=10000.0)
    p.add_argument("--output_dir", type=str, default="tllm_checkpoint")
    p.add_argument("--log_level", type=str, default="info")
    for flag in ("--use_weight_only", "--disable_weight_only_quant_plugin", "--use_qserve", "--per_channel",
                 "--per_token", "--int8_kv_cache", "--fp8_kv_cache", "--use_fp8", "--use_nvfp4", "--use_fp8_rowwise",
                 "--use_meta_fp8_rowwise_recipe", "--per_group", "--load_by_shard", "--load_model_on_cpu",
                 "--use_parallel_embedding", "--save_config_only", "--remove_duplicated_kv_heads"):
        p.add_argument(flag, action="store_true", default=False)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The script's arguments (argv after `python3 convert_checkpoint.py`); ScriptError where argparse exits."""
    try:
        args, unknown = parser().parse_known_args(argv)
    except (argparse.ArgumentError, SystemExit) as e:
        raise ScriptError(f"convert_checkpoint.py: error: {e}") from None
    if unknown:
        raise ScriptError(f"convert_checkpoint.py: error: unrecognized arguments: {' '.join(unknown)}")
    return args


def quant_config(argv: list[str], hf_config: dict[str, Any]) -> dict[str, Any]:
    """The `quantization` section the script would write to the TensorRT-LLM checkpoint's config.json."""
    args = parse(argv)
    if args.quant_ckpt_path is not None and args.weight_only_precision not in ("int4_gptq", "int8_gptq") \
            and not args.use_qserve:
        raise ScriptError("AssertionError: only gptq weights or qserve need this option")
    q: dict[str, Any] = {"quant_algo": None, "kv_cache_quant_algo": None, "group_size": 128, "has_zero_point": False,
                         "pre_quant_scale": False}
    if args.use_weight_only:
        algo = {"int8": "W8A16", "int4": "W4A16", "int8_gptq": "W8A16_GPTQ", "int4_gptq": "W4A16_GPTQ",
                "int4_awq": "W4A16_AWQ"}[args.weight_only_precision]
        q["quant_algo"] = algo
        if args.weight_only_precision in ("int4_gptq", "int8_gptq"):
            q.update(group_size=args.group_size, has_zero_point=True, pre_quant_scale=False)
        elif args.weight_only_precision == "int4_awq":
            q.update(group_size=args.group_size, has_zero_point=False, pre_quant_scale=True)
    if args.int8_kv_cache:
        q["kv_cache_quant_algo"] = "INT8"
    if args.fp8_kv_cache:
        q["kv_cache_quant_algo"] = "FP8"
    hf_q = hf_config.get("quantization_config") or {}
    method = hf_q.get("quant_method")
    if method == "fbgemm_fp8":
        q["quant_algo"] = "FP8_PER_CHANNEL_PER_TOKEN"
    elif method == "awq":
        q.update(quant_algo="W4A16_GPTQ", group_size=hf_q.get("group_size", 128),
                 has_zero_point=hf_q.get("zero_point", False), use_autoawq=True)
    elif method == "gptq":
        if hf_q.get("desc_act", False):
            raise ScriptError("ValueError: GPTQ with desc_act=True is not implemented!")
        q.update(quant_algo="W4A16_GPTQ", group_size=hf_q.get("group_size", 128),
                 has_zero_point=hf_q.get("sym", False))
    return q
