"""A pre-quantized Hugging Face checkpoint (AWQ, GPTQ, FP8) -> engine format, without re-quantizing.

What is kept quantized, and how (engine format 1, weights.py; compute dequantizes to float32 at load, as for
the engine's own int8/int4):
    int4-awq, int4-gptq   the engine's int4: the checkpoint's nibbles repacked, never re-rounded, into
                          (out, in/2) uint8, with its scales (out, n_groups) float32 and its zero points
                          `.zeros` (out, n_groups) uint8; GPTQ act-order keeps its group index `.g_idx` (in,)
                          (dropped where it is the plain j // group_size). GPTQ v1's stored `zero - 1` is undone
                          per nibble.
    fp8                   the engine's fp8: the e4m3 bytes as they are (uint8 bits, safetensors has no numpy
                          float8), with a scale per row and block of columns `.scales` (out, n_col_blocks): a
                          per-tensor scale repeated on every row, a per-channel one as it is, a block scale
                          repeated over its block's rows. Activation scales (`input_scale`) and k/v cache scales
                          are not used: the engine computes in float32 and keeps a float32 KV cache.
Dequantized to float (and named in the summary's `dequantized`): a fused linear (q/k/v, gate/up) whose parts
are not all in one format (a module in the checkpoint's ignore list beside quantized ones), and an fp8
lm_head (the engine's lm_head is float). Embeddings, norms and biases are float in these checkpoints and stay so.
Not read: fused parts whose act-order group indices differ (GPTQ quantizes q/k/v from one Hessian, so they agree).
"""

from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np

from .checkpoint_quant import CheckpointQuant
from .config import LlamaConfig, UnsupportedModelError
from .weights import (STORAGE_DTYPES, _hf_to_engine, dequantize_fp8, dequantize_int4, pack_int4, write_engine_dir)

# Engine linear -> the HF modules fused into it, in order (weights._hf_to_engine fuses the float ones alike).
FUSED = {"qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
         "o_proj": ("self_attn.o_proj",),
         "gate_up_proj": ("mlp.gate_proj", "mlp.up_proj"),
         "down_proj": ("mlp.down_proj",)}
AWQ_REVERSE_ORDER = np.array([0, 4, 1, 5, 2, 6, 3, 7])  # AWQ packs columns 0,2,4,6,1,3,5,7 into nibbles 0..7
NIBBLE_SHIFTS = np.arange(0, 32, 4, dtype=np.uint32)

# ---------------------------------------------------------------------------------------------
# Reading safetensors. safetensors.numpy refuses F8_E4M3 (numpy has no float8), so FP8 checkpoints are read
# here: the format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
# data_offsets}}, then the bytes. ml_dtypes supplies the numpy dtypes safetensors' own reader lacks.

SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
                      "F8_E4M3": ml_dtypes.float8_e4m3fn, "I64": np.int64, "I32": np.int32, "I16": np.int16,
                      "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Read-only arrays over a memory map of the file (a multi-GB shard is not read into memory at once)."""
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the arrays keep it open
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in SAFETENSORS_DTYPES:
            raise UnsupportedModelError(f"{path.name}: tensor {name} has dtype {info['dtype']}, which the reference "
                                        f"engine does not read (it reads {', '.join(SAFETENSORS_DTYPES)})")
        start, end = info["data_offsets"]
        array = np.frombuffer(data, SAFETENSORS_DTYPES[info["dtype"]], offset=8 + header_len + start,
                              count=(end - start) // np.dtype(SAFETENSORS_DTYPES[info["dtype"]]).itemsize)
        out[name] = array.reshape(info["shape"])
    return out


def read_checkpoint_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    index = hf_dir / "model.safetensors.index.json"
    names = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    tensors: dict[str, np.ndarray] = {}
    for name in names:
        if not (hf_dir / name).exists():
            raise UnsupportedModelError(f"no {name} in {hf_dir}; only safetensors checkpoints are supported")
        tensors.update(read_safetensors(hf_dir / name))
    return tensors


# ---------------------------------------------------------------------------------------------
# Each module's weight in the checkpoint, unpacked to (out, in) orientation.


def _nibbles(words: np.ndarray) -> np.ndarray:
    """int32 words (..., n) -> (..., n, 8) uint8: nibble k is bits 4k..4k+3."""
    return ((words.view(np.uint32)[..., None] >> NIBBLE_SHIFTS) & 0xF).astype(np.uint8)


def _int4(t: dict[str, np.ndarray], module: str, quant: CheckpointQuant) -> dict[str, np.ndarray]:
    """{u (out, in) nibbles, scales/zeros (out, n_groups), g_idx (in,) | None} of an AWQ or GPTQ module."""
    qweight, qzeros, scales = t[module + ".qweight"], t[module + ".qzeros"], t[module + ".scales"]
    if quant.scheme == "int4-awq":
        # qweight (in, out/8), qzeros (n_groups, out/8): packed along the output dim in AWQ's interleaved order.
        u = _nibbles(qweight)[..., AWQ_REVERSE_ORDER].reshape(qweight.shape[0], -1).T  # (out, in)
        zeros = _nibbles(qzeros)[..., AWQ_REVERSE_ORDER].reshape(qzeros.shape[0], -1).T  # (out, n_groups)
        g_idx = None
    else:
        # qweight (in/8, out): eight consecutive input rows per word; qzeros (n_groups, out/8) in order.
        u = _nibbles(qweight.T).reshape(qweight.shape[1], -1)  # (out, in)
        zeros = _nibbles(qzeros).reshape(qzeros.shape[0], -1).T  # (out, n_groups)
        if quant.zeros_minus_one:
            zeros = (zeros + 1) & 0xF  # v1 stored zero - 1
        in_f, n_groups = u.shape[1], scales.shape[0]
        g_idx = t.get(module + ".g_idx")
        if g_idx is None:  # some exports without act-order leave it out: the plain layout
            g_idx = np.arange(in_f) // (quant.group_size or in_f)
        g_idx = g_idx.astype(np.int32)
        if in_f % n_groups == 0 and np.array_equal(g_idx, np.arange(in_f) // (in_f // n_groups)):
            g_idx = None  # the plain layout: weights.dequantize_int4's contiguous groups
    # Row-major copies: a transposed view would reach safetensors' writer in column-major order.
    return {"u": np.ascontiguousarray(u), "scales": np.ascontiguousarray(scales.astype(np.float32).T),
            "zeros": np.ascontiguousarray(zeros), "g_idx": g_idx}


def _fp8(t: dict[str, np.ndarray], module: str, quant: CheckpointQuant) -> dict[str, np.ndarray]:
    """{bits (out, in) uint8, scales (out, n_col_blocks) float32} of an fp8 module."""
    bits = t[module + ".weight"].view(np.uint8)
    out_f = bits.shape[0]
    scale = t.get(module + ".weight_scale_inv", t.get(module + ".weight_scale"))
    if scale is None:
        raise UnsupportedModelError(f"{module} is fp8 but has no weight_scale or weight_scale_inv")
    scale = scale.astype(np.float32)
    if quant.weight_scale == "block":
        block_rows = quant.block_size[0]
        scales = np.repeat(scale.reshape(-(-out_f // block_rows), -1), block_rows, axis=0)[:out_f]
    elif scale.size in (1, out_f):
        scales = np.broadcast_to(scale.reshape(-1, 1), (out_f, 1))  # per tensor or per output channel
    else:
        raise UnsupportedModelError(f"{module}: weight scale of shape {scale.shape} for a ({out_f}, "
                                    f"{bits.shape[1]}) weight is neither per tensor, per channel nor per block")
    return {"bits": np.ascontiguousarray(bits), "scales": np.ascontiguousarray(scales)}


def _module(t: dict[str, np.ndarray], module: str, quant: CheckpointQuant) -> tuple[str, dict[str, np.ndarray]]:
    """(kind, parts): "int4", "fp8" or "float" ({"w": (out, in) float32})."""
    if module + ".qweight" in t and quant.scheme.startswith("int4"):
        return "int4", _int4(t, module, quant)
    w = t.get(module + ".weight")
    if w is None:
        raise UnsupportedModelError(f"{quant.method} checkpoint is missing {module}.qweight / {module}.weight")
    if w.dtype == ml_dtypes.float8_e4m3fn:
        return "fp8", _fp8(t, module, quant)
    return "float", {"w": w.astype(np.float32)}


def _as_float(kind: str, p: dict[str, np.ndarray], block_cols: int | None) -> np.ndarray:
    if kind == "int4":
        return dequantize_int4(pack_int4(p["u"].astype(np.int16) - 8), p["scales"], p["zeros"], p["g_idx"])
    if kind == "fp8":
        return dequantize_fp8(p["bits"], p["scales"], block_cols)
    return p["w"]


def _fuse(name: str, parts: list[tuple[str, dict[str, np.ndarray]]], block_cols: int | None,
          storage: Any, dequantized: list[str]) -> dict[str, np.ndarray]:
    """The engine tensors of one fused linear: quantized when every part is in one format, float otherwise."""
    kinds = {k for k, _ in parts}
    if kinds == {"int4"}:
        g_idxs = [p["g_idx"] for _, p in parts]
        if any((g is None) != (g_idxs[0] is None) or (g is not None and not np.array_equal(g, g_idxs[0]))
               for g in g_idxs):
            raise UnsupportedModelError(f"{name}: the fused modules' act-order group indices (g_idx) differ; the "
                                        "reference engine fuses them into one matmul and reads one g_idx")
        u = np.concatenate([p["u"] for _, p in parts])  # (out, in)
        out = {name + ".qweight": pack_int4(u.astype(np.int16) - 8),  # the nibbles as stored, u = q + 8
               name + ".scales": np.concatenate([p["scales"] for _, p in parts]),
               name + ".zeros": np.concatenate([p["zeros"] for _, p in parts]).astype(np.uint8)}
        if g_idxs[0] is not None:
            out[name + ".g_idx"] = g_idxs[0]
        return out
    if kinds == {"fp8"}:
        return {name + ".qweight": np.concatenate([p["bits"] for _, p in parts]),
                name + ".scales": np.concatenate([p["scales"] for _, p in parts]).astype(np.float32)}
    if kinds != {"float"}:
        dequantized.append(name)
    w = np.concatenate([_as_float(k, p, block_cols) for k, p in parts])
    return {name: np.ascontiguousarray(w.astype(storage))}


def convert_prequantized(hf_dir: Path, out_dir: Path, cfg: LlamaConfig, quant: CheckpointQuant,
                         dtype: str = "float32") -> dict[str, Any]:
    """A pre-quantized checkpoint dir -> engine dir; the summary says what was kept quantized."""
    if quant.scheme not in ("int4-awq", "int4-gptq", "fp8"):
        raise UnsupportedModelError(f"the checkpoint is quantized as {quant.describe()}, which the reference "
                                    "engine does not read")
    hf = read_checkpoint_tensors(Path(hf_dir))
    storage = STORAGE_DTYPES[dtype]
    lm_head_dequantized = False
    if not cfg.tie_word_embeddings and hf.get("lm_head.weight") is not None and \
            hf["lm_head.weight"].dtype == ml_dtypes.float8_e4m3fn:
        hf["lm_head.weight"], lm_head_dequantized = _as_float("fp8", _fp8(hf, "lm_head", quant), None), True
    rest = {k: v for k, v in hf.items() if v.dtype != ml_dtypes.float8_e4m3fn}  # non-linears are float
    tensors = {k: np.ascontiguousarray(v.astype(np.float32).astype(storage))
               for k, v in _hf_to_engine(cfg, rest, with_linears=False).items()}
    block_cols = quant.block_size[1] if quant.weight_scale == "block" else None
    dequantized: list[str] = ["lm_head"] if lm_head_dequantized else []
    hd = cfg.head_dim
    expected = {"qkv_proj": (cfg.qkv_size, cfg.hidden_size), "o_proj": (cfg.hidden_size, cfg.num_attention_heads * hd),
                "gate_up_proj": (2 * cfg.intermediate_size, cfg.hidden_size),
                "down_proj": (cfg.hidden_size, cfg.intermediate_size)}
    for i in range(cfg.num_hidden_layers):
        for name, modules in FUSED.items():
            parts = [_module(hf, f"model.layers.{i}.{m}", quant) for m in modules]
            fused = _fuse(f"layers.{i}.{name}", parts, block_cols, storage, dequantized)
            # Every part's first tensor (u, bits or w) is (out, in).
            shape = (sum(next(iter(p.values())).shape[0] for _, p in parts), next(iter(parts[0][1].values())).shape[1])
            if shape != expected[name]:
                raise UnsupportedModelError(f"layers.{i}.{name} unpacks to {shape}, config.json implies "
                                            f"{expected[name]}")
            tensors.update(fused)
    mode = "int4" if quant.scheme.startswith("int4") else "fp8"
    quantization = {"mode": mode, "from_checkpoint": quant.describe(), "method": quant.method,
                    "group_size": quant.group_size, "zero_point": quant.zero_point, "act_order": quant.act_order,
                    "symmetric": False if mode == "int4" else None,
                    "weight_scale": quant.weight_scale, "block_cols": block_cols,
                    "quantized": [n for n in FUSED if not any(d.endswith("." + n) for d in dequantized)],
                    "dequantized": sorted(set(dequantized))}
    write_engine_dir(Path(out_dir), cfg, tensors, weight_dtype=dtype, quantization=quantization)
    return {"architecture": cfg.architecture, "weight_dtype": dtype, "checkpoint_quant": quant.describe(),
            "kept_quantized": mode, "dequantized": sorted(set(dequantized)),
            "bytes": int(sum(v.nbytes for v in tensors.values()))}
