"""What quantization a Hugging Face checkpoint already carries, read from its config files.

Hub checkpoints increasingly come quantized. The format is named in one of two places:
    config.json "quantization_config"   transformers' convention: quant_method awq | gptq | fp8 |
                                         compressed-tensors | modelopt | bitsandbytes | ...
    hf_quant_config.json                 ModelOpt's export ({"producer": {"name": "modelopt"},
                                         "quantization": {"quant_algo": "FP8", ...}})
`read_checkpoint_quant` turns either into one typed value, `CheckpointQuant`, that the build records in its
manifest, the planner sizes weights from, and each backend accepts or refuses. A format this module does not
recognise is still returned (scheme "unknown", with the raw dict), so that a backend can refuse it by name
rather than build a float model from packed integers.

Schemes (the weight layouts the loaders below implement or refuse):
    int4-awq    AutoAWQ "gemm": qweight int32 (in, out/8), 8 nibbles per int32 in AWQ's interleaved order,
                qzeros int32 (in/g, out/8), scales (in/g, out); w = (q - z) * s
    int4-gptq   GPTQ: qweight int32 (in/8, out), nibbles in order along the input dim, qzeros int32
                (n_groups, out/8), scales (n_groups, out), g_idx (in,) the group of each input row
                (act-order permutes it); checkpoint_format "gptq" stores zero - 1, "gptq_v2" the zero itself
    fp8         float8_e4m3fn weights (out, in) with a per-tensor, per-channel or per-block scale, w = f8 * s:
                compressed-tensors and ModelOpt store `weight_scale` (per tensor: one value; per channel:
                (out, 1); compressed-tensors block: (out/bo, in/bi)), transformers' FineGrainedFP8 stores
                `weight_scale_inv` (out/bo, in/bi) (multiplied, despite its name, as DeepSeek-V3's
                weight_dequant does). `input_scale` (static activations) and k/v scales are for fp8 GEMMs and an
                fp8 KV cache.

Checked against the producers' sources: AutoAWQ WQLinear_GEMM.from_linear (order_map [0, 2, 4, 6, 1, 3, 5, 7]),
AutoGPTQ/gptqmodel pack (v1 `zeros -= 1` before packing; gptqmodel's v1 -> v2 adds one per nibble),
transformers' FineGrainedFP8Config (weight_block_size defaults to (128, 128) when the key is absent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import UnsupportedModelError

SCHEMES = ("int4-awq", "int4-gptq", "fp8", "unknown")


@dataclass(frozen=True)
class CheckpointQuant:
    scheme: str  # one of SCHEMES
    method: str  # as the checkpoint names it: awq, gptq, compressed-tensors, fp8, modelopt:FP8, ...
    found_in: str  # "config.json" or "hf_quant_config.json"
    bits: int  # weight bits
    group_size: int | None = None  # int4: inputs per scale group; None = one group per row (per channel)
    zero_point: bool = False  # int4: asymmetric, with stored zero points
    act_order: bool = False  # GPTQ desc_act: g_idx is a permutation, not i // group_size
    zeros_minus_one: bool = False  # GPTQ v1 ("gptq" format) stores zero - 1 (AutoGPTQ's historical quirk)
    weight_scale: str | None = None  # fp8: "tensor", "channel" or "block"
    block_size: tuple[int, int] | None = None  # fp8 "block": (out, in) block shape
    activation_scheme: str | None = None  # fp8: "static" (input_scale stored) or "dynamic"
    kv_cache: str | None = None  # a quantized KV cache the checkpoint asks for (e.g. "fp8")
    excluded: tuple[str, ...] = ()  # module names or patterns left unquantized
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    def describe(self) -> str:
        """One line for plan, dry run and errors."""
        if self.scheme.startswith("int4"):
            group = f"group {self.group_size}" if self.group_size else "per channel"
            extra = [group, "zero points" if self.zero_point else "symmetric"]
            if self.act_order:
                extra.append("act-order")
            return f"{self.method} int4 ({', '.join(extra)})"
        if self.scheme == "fp8":
            scale = f"{self.weight_scale} scales" + (f" {self.block_size[0]}x{self.block_size[1]}"
                                                     if self.block_size else "")
            return f"{self.method} fp8 e4m3 ({scale}, {self.activation_scheme or 'dynamic'} activations)"
        return f"{self.method} (not a format trtpipe reads)"

    def weight_bytes_per_param(self, dtype_bytes: float = 2.0) -> float:
        """Bytes per quantized weight, scales and zeros included; dtype_bytes is the scales' storage size."""
        if self.scheme.startswith("int4"):
            per_group = dtype_bytes + (0.5 if self.zero_point else 0.0)
            return 0.5 + (per_group / self.group_size if self.group_size else 0.0)
        if self.scheme == "fp8":
            return 1.0  # a scale per tensor, row or 128x128 block is negligible
        return dtype_bytes

    def to_dict(self) -> dict[str, Any]:
        """For the manifest: the typed fields and the checkpoint's own dict."""
        d = {k: v for k, v in self.__dict__.items() if k != "raw"}
        d["block_size"] = list(self.block_size) if self.block_size else None
        d["excluded"] = list(self.excluded)
        return {**d, "checkpoint_config": self.raw}


def _int(d: dict[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise UnsupportedModelError(f"{where}: `{key}` must be an integer, found {value!r}")
    return value


def _awq(qc: dict[str, Any], where: str) -> CheckpointQuant:
    version = str(qc.get("version", "gemm")).lower()
    bits = _int(qc, "bits", where, 4)
    if version != "gemm" or bits != 4:
        # gemv/gemv_fast/marlin reorder the packed words for their own kernels; exllama is GPTQ's layout.
        return _unknown(f"awq {version} {bits}-bit", qc, where)
    group = _int(qc, "group_size", where, 128)
    return CheckpointQuant(scheme="int4-awq", method="awq", found_in=where, bits=4,
                           group_size=None if group == -1 else group, zero_point=bool(qc.get("zero_point", True)),
                           excluded=tuple(qc.get("modules_to_not_convert") or ()), raw=qc)


def _gptq(qc: dict[str, Any], where: str) -> CheckpointQuant:
    bits = _int(qc, "bits", where, 4)
    fmt = str(qc.get("checkpoint_format", "gptq")).lower()
    if bits != 4 or fmt not in ("gptq", "gptq_v2"):
        return _unknown(f"gptq {bits}-bit ({fmt} format)", qc, where)
    group = _int(qc, "group_size", where, 128)
    return CheckpointQuant(scheme="int4-gptq", method="gptq", found_in=where, bits=4,
                           group_size=None if group == -1 else group,
                           # GPTQ always stores zeros; sym=True only means they are all 2**(bits-1).
                           zero_point=True, act_order=bool(qc.get("desc_act", False)),
                           zeros_minus_one=fmt == "gptq", raw=qc)


def _fp8_weight_scale(strategy: str, where: str) -> str:
    if strategy not in ("tensor", "channel", "block"):
        raise UnsupportedModelError(f"{where}: fp8 weight strategy {strategy!r}; read are 'tensor', 'channel' and "
                                    "'block'")
    return strategy


def _block(block: Any, where: str, key: str) -> tuple[int, int]:
    if not isinstance(block, (list, tuple)) or len(block) != 2 or not all(
            isinstance(b, int) and not isinstance(b, bool) and b > 0 for b in block):
        raise UnsupportedModelError(f"{where}: `{key}` must be two positive integers, found {block!r}")
    return (block[0], block[1])


def _compressed_tensors(qc: dict[str, Any], where: str) -> CheckpointQuant:
    groups = list((qc.get("config_groups") or {}).values())
    weights = [g.get("weights") or {} for g in groups]
    is_fp8 = weights and all(w.get("type") == "float" and w.get("num_bits") == 8 for w in weights)
    strategies = {w.get("strategy", "tensor") for w in weights}
    if not is_fp8 or len(strategies) != 1 or str(qc.get("format", "float-quantized")) != "float-quantized":
        return _unknown(f"compressed-tensors {qc.get('format')}", qc, where)
    acts = [g.get("input_activations") or {} for g in groups]
    dynamic = all(a.get("dynamic", True) for a in acts) if any(acts) else True
    kv = qc.get("kv_cache_scheme")
    strategy = _fp8_weight_scale(strategies.pop(), where)
    block = _block(weights[0].get("block_structure"), where, "block_structure") if strategy == "block" else None
    return CheckpointQuant(scheme="fp8", method="compressed-tensors", found_in=where, bits=8,
                           weight_scale=strategy, block_size=block,
                           activation_scheme="dynamic" if dynamic else "static",
                           kv_cache="fp8" if kv and kv.get("type") == "float" and kv.get("num_bits") == 8 else None,
                           excluded=tuple(qc.get("ignore") or ()), raw=qc)


def _hf_fp8(qc: dict[str, Any], where: str) -> CheckpointQuant:
    # transformers' FineGrainedFP8Config: an absent key means its default (128, 128); an explicit null, one scale
    # per tensor.
    block = qc.get("weight_block_size", [128, 128])
    block = _block(block, where, "weight_block_size") if block is not None else None
    return CheckpointQuant(scheme="fp8", method="fp8", found_in=where, bits=8,
                           weight_scale="block" if block else "tensor", block_size=block,
                           activation_scheme=str(qc.get("activation_scheme", "dynamic")),
                           excluded=tuple(qc.get("modules_to_not_convert") or ()), raw=qc)


def _modelopt(q: dict[str, Any], where: str, raw: dict[str, Any]) -> CheckpointQuant:
    algo = str(q.get("quant_algo") or "").upper()
    kv = q.get("kv_cache_quant_algo")
    if algo != "FP8":
        # NVFP4, W4A8_AWQ, W4A16_AWQ, FP8_PER_CHANNEL_PER_TOKEN...: ModelOpt's own layouts for TensorRT-LLM kernels.
        return _unknown(f"modelopt:{algo or '?'}", raw, where, kv_cache=str(kv).lower() if kv else None)
    return CheckpointQuant(scheme="fp8", method="modelopt:FP8", found_in=where, bits=8, weight_scale="tensor",
                           activation_scheme="static", kv_cache=str(kv).lower() if kv else None,
                           excluded=tuple(q.get("exclude_modules") or q.get("ignore") or ()), raw=raw)


def _unknown(method: str, raw: dict[str, Any], where: str, kv_cache: str | None = None) -> CheckpointQuant:
    return CheckpointQuant(scheme="unknown", method=method, found_in=where, bits=0, kv_cache=kv_cache, raw=raw)


def checkpoint_quant_from_configs(hf_config: dict[str, Any],
                                  hf_quant_config: dict[str, Any] | None = None) -> CheckpointQuant | None:
    """The checkpoint's quantization from its parsed config.json (and hf_quant_config.json, if it has one);
    None for a full-precision checkpoint."""
    if hf_quant_config is not None:
        if not isinstance(hf_quant_config.get("quantization"), dict):
            raise UnsupportedModelError("hf_quant_config.json has no `quantization` object; is it a ModelOpt export?")
        return _modelopt(hf_quant_config["quantization"], "hf_quant_config.json", hf_quant_config)
    qc = hf_config.get("quantization_config")
    if qc is None:
        return None
    where = "config.json"
    if not isinstance(qc, dict):
        raise UnsupportedModelError(f"{where}: `quantization_config` must be an object, found {type(qc).__name__}")
    method = str(qc.get("quant_method", "")).lower()
    readers = {"awq": _awq, "gptq": _gptq, "compressed-tensors": _compressed_tensors, "fp8": _hf_fp8}
    if method in readers:
        return readers[method](qc, where)
    if method == "modelopt":
        return _modelopt(qc, where, qc)
    return _unknown(method or "?", qc, where)


def read_checkpoint_quant(hf_dir: Path) -> CheckpointQuant | None:
    """`checkpoint_quant_from_configs` over the files of a checkpoint directory."""
    hf_dir = Path(hf_dir)
    config_path = hf_dir / "config.json"
    if not config_path.exists():
        raise UnsupportedModelError(f"no config.json in {hf_dir}")
    modelopt_path = hf_dir / "hf_quant_config.json"
    modelopt = json.loads(modelopt_path.read_text()) if modelopt_path.exists() else None
    return checkpoint_quant_from_configs(json.loads(config_path.read_text()), modelopt)
