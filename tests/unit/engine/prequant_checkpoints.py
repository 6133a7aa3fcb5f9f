"""Pre-quantized checkpoints the tests make themselves: known float weights quantized and packed here, following
each producer's published layout, and dequantized again here as the oracle.

Written from the producers' sources, not from trtpipe's reader (engine/prequantized.py):
- AWQ gemm (AutoAWQ WQLinear_GEMM.from_linear): intweight = round(w / s + z) as (in, out); qweight (in, out/8)
  int32 with column col*8 + order_map[i] in bits 4i..4i+3, order_map = [0, 2, 4, 6, 1, 3, 5, 7]; qzeros
  (in/g, out/8) packed the same way; scales (in/g, out) fp16; w = (q - z) * s.
- GPTQ (AutoGPTQ / gptqmodel pack): qweight (in/8, out) int32 with input row 8r + j in bits 4j..; qzeros
  (n_groups, out/8) with column 8c + j in bits 4j.., holding z - 1 in format v1 ("gptq") and z in v2; scales
  (n_groups, out) fp16; g_idx (in,) int32, the group of each input row (act-order: groups follow a permutation).
- FP8 e4m3 (compressed-tensors, ModelOpt, transformers FineGrainedFP8): weight (out, in) F8_E4M3, w = f8 * s
  with weight_scale per tensor (shape (1,), ModelOpt: ()), per channel ((out, 1)), or transformers'
  weight_scale_inv per (bo, bi) block (ceil(out/bo), ceil(in/bi)); ModelOpt adds input_scale and k/v scales.

The oracle's weights are float32; written to a float checkpoint they go through the float path that
test_model_matches_golden checks against transformers.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save_file

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
E4M3_MAX = 448.0
SAME_INPUT = {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"}  # modules reading one input
LINEAR = re.compile(r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight")


def linears(tensors: dict[str, np.ndarray]) -> list[str]:
    return [name for name in tensors if LINEAR.fullmatch(name)]


# --- int4 ---------------------------------------------------------------------------------------------------


def quantize_asym(w: np.ndarray, g_idx: np.ndarray, n_groups: int, sym: bool = False):
    """Min/max asymmetric 4-bit per (row, group): q (out, in) 0..15, scales fp16 and zeros (out, n_groups)."""
    out_f = w.shape[0]
    scales = np.zeros((out_f, n_groups), np.float16)
    zeros = np.zeros((out_f, n_groups), np.int64)
    for g in range(n_groups):
        cols = w[:, g_idx == g]
        lo, hi = np.minimum(cols.min(1), 0), np.maximum(cols.max(1), 0)
        if sym:
            s, z = np.maximum(np.abs(lo), hi) / 7.5, np.full(out_f, 8)
        else:
            s = (hi - lo) / 15
            z = np.clip(np.rint(-lo / s), 1, 15)  # >= 1: AutoGPTQ v1 stores z - 1 and cannot hold -1
        scales[:, g], zeros[:, g] = s.astype(np.float16), z
    s32 = scales.astype(np.float32)[:, g_idx]  # (out, in)
    q = np.clip(np.rint(w / s32) + zeros[:, g_idx], 0, 15).astype(np.int64)
    return q, scales, zeros


def dequantize_asym(q, scales, zeros, g_idx) -> np.ndarray:
    return ((q - zeros[:, g_idx]).astype(np.float32) * scales.astype(np.float32)[:, g_idx]).astype(np.float32)


def pack_rows(values: np.ndarray) -> np.ndarray:
    """(8k, n) ints 0..15 -> (k, n) int32: row 8r + j in bits 4j.. (GPTQ qweight)."""
    v = values.astype(np.uint32).reshape(-1, 8, values.shape[1])
    word = np.zeros((v.shape[0], v.shape[2]), np.uint32)
    for j in range(8):
        word |= v[:, j, :] << np.uint32(4 * j)
    return word.view(np.int32)


def pack_cols(values: np.ndarray, order: list[int]) -> np.ndarray:
    """(n, 8k) ints 0..15 -> (n, k) int32: column 8c + order[i] in bits 4i.. (AWQ: AWQ_ORDER; GPTQ: in order)."""
    v = values.astype(np.uint32)
    word = np.zeros((v.shape[0], v.shape[1] // 8), np.uint32)
    for c in range(word.shape[1]):
        for i in range(8):
            word[:, c] |= v[:, c * 8 + order[i]] << np.uint32(4 * i)
    return word.view(np.int32)


def awq_module(w: np.ndarray, group: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out_f, in_f = w.shape
    g_idx = np.arange(in_f) // group
    q, scales, zeros = quantize_asym(w, g_idx, in_f // group)
    packed = {"qweight": pack_cols(q.T, AWQ_ORDER), "qzeros": pack_cols(zeros.T, AWQ_ORDER),
              "scales": np.ascontiguousarray(scales.T)}
    return packed, dequantize_asym(q, scales, zeros, g_idx)


def gptq_module(w: np.ndarray, group: int | None, act_order_perm: np.ndarray | None, v1: bool,
                sym: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    out_f, in_f = w.shape
    g = group or in_f
    order = act_order_perm if act_order_perm is not None else np.arange(in_f)
    g_idx = np.empty(in_f, np.int64)
    g_idx[order] = np.arange(in_f) // g  # act-order: the k-th column quantized goes to group k // g
    n_groups = -(-in_f // g)
    q, scales, zeros = quantize_asym(w, g_idx, n_groups, sym=sym)
    stored_zeros = zeros - 1 if v1 else zeros
    packed = {"qweight": pack_rows(q.T), "qzeros": pack_cols(stored_zeros.T, list(range(8))),
              "scales": np.ascontiguousarray(scales.T), "g_idx": g_idx.astype(np.int32)}
    return packed, dequantize_asym(q, scales, zeros, g_idx)


# --- fp8 ----------------------------------------------------------------------------------------------------


def fp8_module(w: np.ndarray, scale: str, block: tuple[int, int] = (128, 128)):
    """(f8 weight, scale tensor, oracle): scale "tensor" (1,), "channel" (out, 1), "block" (ceil(out/bo), ceil(in/bi))."""
    out_f, in_f = w.shape
    if scale == "tensor":
        s = np.array([np.abs(w).max() / E4M3_MAX], np.float32)
        full = np.full(w.shape, s[0], np.float32)
    elif scale == "channel":
        s = (np.abs(w).max(1, keepdims=True) / E4M3_MAX).astype(np.float32)
        full = np.broadcast_to(s, w.shape)
    else:
        bo, bi = block
        s = np.zeros((-(-out_f // bo), -(-in_f // bi)), np.float32)
        for r in range(s.shape[0]):
            for c in range(s.shape[1]):
                s[r, c] = np.abs(w[r * bo:(r + 1) * bo, c * bi:(c + 1) * bi]).max() / E4M3_MAX
        full = np.kron(s, np.ones((bo, bi), np.float32))[:out_f, :in_f]
    f8 = (w / full).astype(ml_dtypes.float8_e4m3fn)
    return f8, s, (f8.astype(np.float32) * full).astype(np.float32)


# --- files --------------------------------------------------------------------------------------------------

ST_DTYPES = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(ml_dtypes.bfloat16): "BF16",
             np.dtype(ml_dtypes.float8_e4m3fn): "F8_E4M3", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """safetensors written by hand (safetensors.numpy cannot write float8): 8-byte header length, JSON header,
    the tensors' bytes in order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": ST_DTYPES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def quantize_checkpoint_dir(src: Path, dst: Path, fmt: str, **kw) -> dict[str, np.ndarray]:
    """Copy checkpoint `src` (config, tokenizer, float weights) to `dst` in format `fmt`; returns the oracle's
    float32 tensors (every tensor, the linears dequantized by this module)."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, dst / f.name)
    floats = {k: v.astype(np.float32) for k, v in load_file(str(src / "model.safetensors")).items()}
    config = json.loads((src / "config.json").read_text())
    rng = np.random.default_rng(7)
    out: dict[str, np.ndarray] = {}
    oracle = dict(floats)
    perms: dict[str, np.ndarray] = {}
    for name in linears(floats):
        module, w = name.removesuffix(".weight"), floats[name]
        if fmt == "awq":
            packed, oracle[name] = awq_module(w, kw.get("group", 32))
        elif fmt == "gptq":
            perm = None
            if kw.get("act_order"):
                # One permutation per input (q/k/v share one, gate/up another), as GPTQ's shared Hessian gives.
                layer, proj = module.rsplit(".", 2)[0], module.rsplit(".", 1)[1]
                perm = perms.setdefault(f"{layer}.{SAME_INPUT.get(proj, proj)}", rng.permutation(w.shape[1]))
            packed, oracle[name] = gptq_module(w, kw.get("group", 32), perm, kw.get("v1", True), kw.get("sym", False))
        else:
            f8, s, oracle[name] = fp8_module(w, kw["scale"], kw.get("block", (128, 128)))
            packed = {"weight": f8, "weight_scale_inv" if fmt == "hf-fp8" else "weight_scale":
                      s.reshape(()) if fmt == "modelopt-fp8" else s}
            if fmt == "modelopt-fp8":
                packed["input_scale"] = np.array(0.05, np.float32)
        for suffix, a in packed.items():
            out[f"{module}.{suffix}"] = a
        del floats[name]
    if fmt == "modelopt-fp8":
        for i in range(config["num_hidden_layers"]):
            out[f"model.layers.{i}.self_attn.k_proj.k_scale"] = np.array(0.1, np.float32)
            out[f"model.layers.{i}.self_attn.v_proj.v_scale"] = np.array(0.1, np.float32)
    out.update({k: v.astype(ml_dtypes.bfloat16) for k, v in floats.items()})  # embeddings, norms, lm_head
    write_safetensors(dst / "model.safetensors", out)
    config["quantization_config"] = quantization_config(fmt, **kw)
    if fmt == "modelopt-fp8":
        del config["quantization_config"]
        (dst / "hf_quant_config.json").write_text(json.dumps({
            "producer": {"name": "modelopt", "version": "0.33.0"},
            "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}))
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    # The oracle holds the checkpoint's float tensors as the engine reads them (bf16 in the file).
    return {k: (v.astype(ml_dtypes.bfloat16).astype(np.float32) if not LINEAR.fullmatch(k) else v)
            for k, v in oracle.items()}


def quantization_config(fmt: str, **kw) -> dict:
    if fmt == "awq":
        return {"quant_method": "awq", "bits": 4, "group_size": kw.get("group", 32), "zero_point": True,
                "version": "gemm", "modules_to_not_convert": None}
    if fmt == "gptq":
        return {"quant_method": "gptq", "bits": 4, "group_size": kw.get("group", 32) or -1,
                "desc_act": bool(kw.get("act_order")), "sym": bool(kw.get("sym")),
                "checkpoint_format": "gptq" if kw.get("v1", True) else "gptq_v2"}
    if fmt == "ct-fp8":
        weights = {"num_bits": 8, "type": "float", "strategy": kw["scale"], "symmetric": True}
        if kw["scale"] == "block":
            weights["block_structure"] = list(kw["block"])
        return {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
                "config_groups": {"group_0": {"targets": ["Linear"], "weights": weights,
                    "input_activations": {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True}}}}
    if fmt == "hf-fp8":
        return {"quant_method": "fp8", "activation_scheme": "dynamic", "weight_block_size": list(kw["block"])}
    return {}


def write_float_checkpoint(src: Path, dst: Path, tensors: dict[str, np.ndarray]) -> Path:
    """The oracle's checkpoint: `src`'s config and tokenizer with these float32 tensors."""
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name not in ("model.safetensors", "hf_quant_config.json"):
            shutil.copy(f, dst / f.name)
    config = json.loads((src / "config.json").read_text())
    config.pop("quantization_config", None)
    (dst / "config.json").write_text(json.dumps(config))
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(dst / "model.safetensors"))
    return dst
