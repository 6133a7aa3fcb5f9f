"""Checkpoint I/O: HF safetensors -> engine format, int8/int4 packing, and loading for compute.

Engine format (engine_format 1), one directory:
    config.json          LlamaConfig fields + "engine_format", "weight_dtype", "quantization"
    weights.safetensors  tensors under our own names (below), stored in weight_dtype

A quantized linear `X` is stored as X.qweight and X.scales instead of X (quantization["mode"]): int8
(per-channel symmetric), int4 (groups along the input dim, two nibbles per uint8, plus X.zeros and X.g_idx for a
pre-quantized AWQ/GPTQ checkpoint) or fp8 (e4m3 bits, a scale per row and block; prequantized.py).

Linear weights keep the HF (out_features, in_features) layout on disk so that per-output-channel
and along-the-input-dim groups are rows and row slices; compute keeps that layout too (model.linear
picks the matmul form per batch size). q/k/v and gate/up are fused at conversion: one matmul each.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save_file

from .config import LlamaConfig, UnsupportedModelError
from .lm_head import LMHead

ENGINE_FORMAT = 1
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}
# Decoder-block linears; the only tensors quantization touches (embeddings, norms, lm_head stay).
LAYER_LINEARS = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")


# ---------------------------------------------------------------------------------------------
# Reading a Hugging Face checkpoint


def read_hf_tensors(hf_dir: Path) -> dict[str, np.ndarray]:
    """All tensors of a single-file or sharded (model.safetensors.index.json) checkpoint."""
    hf_dir = Path(hf_dir)
    index = hf_dir / "model.safetensors.index.json"
    if index.exists():
        shard_names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (hf_dir / "model.safetensors").exists():
        shard_names = ["model.safetensors"]
    else:
        raise UnsupportedModelError(
            f"no model.safetensors or model.safetensors.index.json in {hf_dir}; "
            "only safetensors checkpoints are supported (not pytorch_model.bin)"
        )
    tensors: dict[str, np.ndarray] = {}
    for name in shard_names:
        tensors.update(load_file(str(hf_dir / name)))
    return tensors


def _hf_to_engine(cfg: LlamaConfig, hf: dict[str, np.ndarray], with_linears: bool = True) -> dict[str, np.ndarray]:
    """Rename and fuse HF tensors; raises naming every missing tensor. with_linears=False: all but the
    decoder-block linears (a pre-quantized checkpoint's, which prequantized.py carries over itself)."""
    missing: list[str] = []

    def take(name: str) -> np.ndarray:
        if name not in hf:
            missing.append(name)
            return np.zeros(0, np.float32)
        return hf[name]

    out: dict[str, np.ndarray] = {"embed_tokens": take("model.embed_tokens.weight")}
    for i in range(cfg.num_hidden_layers):
        p, e = f"model.layers.{i}.", f"layers.{i}."
        out[e + "attn_norm"] = take(p + "input_layernorm.weight")
        out[e + "mlp_norm"] = take(p + "post_attention_layernorm.weight")
        if with_linears:
            out[e + "qkv_proj"] = [take(f"{p}self_attn.{n}_proj.weight") for n in "qkv"]
            out[e + "o_proj"] = take(p + "self_attn.o_proj.weight")
            out[e + "gate_up_proj"] = [take(p + "mlp.gate_proj.weight"), take(p + "mlp.up_proj.weight")]
            out[e + "down_proj"] = take(p + "mlp.down_proj.weight")
        if cfg.qkv_bias:
            out[e + "qkv_bias"] = [take(f"{p}self_attn.{n}_proj.bias") for n in "qkv"]
        if cfg.o_bias:
            out[e + "o_bias"] = take(p + "self_attn.o_proj.bias")
    out["final_norm"] = take("model.norm.weight")
    if not cfg.tie_word_embeddings:
        out["lm_head"] = take("lm_head.weight")
    if missing:
        shown = ", ".join(missing[:8]) + (f" (+{len(missing) - 8} more)" if len(missing) > 8 else "")
        raise UnsupportedModelError(f"{cfg.architecture} checkpoint is missing tensors: {shown}")
    # Fuse only after every name checked, so a missing tensor never surfaces as a concat error.
    return {k: np.concatenate(v, axis=0) if isinstance(v, list) else v for k, v in out.items()}


def _check_shapes(cfg: LlamaConfig, t: dict[str, np.ndarray]) -> None:
    h, hd = cfg.hidden_size, cfg.head_dim
    expected = {
        "embed_tokens": (cfg.vocab_size, h),
        "layers.0.qkv_proj": (cfg.qkv_size, h),
        "layers.0.o_proj": (h, cfg.num_attention_heads * hd),
        "layers.0.gate_up_proj": (2 * cfg.intermediate_size, h),
        "layers.0.down_proj": (h, cfg.intermediate_size),
    }
    for name, shape in expected.items():
        if t[name].shape != shape:
            raise UnsupportedModelError(
                f"tensor {name} has shape {t[name].shape}, config.json implies {shape}"
            )


def convert_checkpoint(hf_dir: Path, out_dir: Path, dtype: str = "float32") -> dict[str, Any]:
    """A full-precision HF checkpoint dir -> engine dir. `dtype` is the storage dtype; compute is always float32.
    (engine/convert.py sends a pre-quantized checkpoint to prequantized.py instead.)"""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(STORAGE_DTYPES)}. Given: {dtype!r}")
    hf_dir, out_dir = Path(hf_dir), Path(out_dir)
    config_path = hf_dir / "config.json"
    if not config_path.exists():
        raise UnsupportedModelError(f"no config.json in {hf_dir}")
    cfg = LlamaConfig.from_hf_config(json.loads(config_path.read_text()))
    tensors = _hf_to_engine(cfg, read_hf_tensors(hf_dir))
    _check_shapes(cfg, tensors)
    # Through float32 so that bf16 -> fp16 does not go through a lossy direct cast path.
    storage = STORAGE_DTYPES[dtype]
    tensors = {k: np.ascontiguousarray(v.astype(np.float32).astype(storage)) for k, v in tensors.items()}
    write_engine_dir(out_dir, cfg, tensors, weight_dtype=dtype, quantization=None)
    return {
        "architecture": cfg.architecture,
        "num_params": int(sum(v.size for v in tensors.values())),
        "bytes": int(sum(v.nbytes for v in tensors.values())),
        "weight_dtype": dtype,
    }


# ---------------------------------------------------------------------------------------------
# Engine directory I/O


def write_engine_dir(
    out_dir: Path,
    cfg: LlamaConfig,
    tensors: dict[str, np.ndarray],
    weight_dtype: str,
    quantization: dict[str, Any] | None,
) -> None:
    """Write config.json + weights.safetensors; each file goes to a temp name and is renamed in."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {**cfg.to_dict(), "engine_format": ENGINE_FORMAT, "weight_dtype": weight_dtype,
              "quantization": quantization}
    tmp_weights = out_dir / ".weights.safetensors.tmp"
    save_file(tensors, str(tmp_weights), metadata={"format": "trtpipe-engine"})
    os.replace(tmp_weights, out_dir / "weights.safetensors")
    tmp_config = out_dir / ".config.json.tmp"
    tmp_config.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp_config, out_dir / "config.json")


def read_engine_dir(engine_dir: Path) -> tuple[LlamaConfig, dict[str, np.ndarray]]:
    engine_dir = Path(engine_dir)
    config_path = engine_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} not found; build it with convert_checkpoint()")
    d = json.loads(config_path.read_text())
    if d.get("engine_format") != ENGINE_FORMAT:
        raise UnsupportedModelError(
            f"{config_path}: `engine_format` is {d.get('engine_format')!r}, this engine reads {ENGINE_FORMAT}; "
            "an HF checkpoint must go through convert_checkpoint() first"
        )
    return LlamaConfig.from_dict(d), load_file(str(engine_dir / "weights.safetensors"))


# ---------------------------------------------------------------------------------------------
# Weight-only quantization: symmetric, so zero stays exactly zero and no zero-points are stored.
# A pre-quantized checkpoint's int4 (prequantized.py) adds what AWQ/GPTQ carry: zero points per group
# (`.zeros`) and, for GPTQ act-order, the group of each input column (`.g_idx`).


def quantize_int8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel int8. w: (out, in) -> q (out, in) int8, scales (out,) float32."""
    w = w.astype(np.float32)
    scales = np.abs(w).max(axis=1) / 127.0  # (out,)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    q = np.clip(np.rint(w / scales[:, None]), -127, 127).astype(np.int8)
    return q, scales


def dequantize_int8(q: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return q.astype(np.float32) * scales[:, None]


def int4_group_size(in_features: int, group_size: int) -> int:
    """group_size if it divides the input dim, else the largest divisor of the dim below it."""
    g = min(group_size, in_features)
    while in_features % g:
        g -= 1
    return g


def pack_int4(q: np.ndarray) -> np.ndarray:
    """(out, in) int values in [-8, 7] -> (out, in/2) uint8; element 2j in the low nibble."""
    if q.shape[-1] % 2:
        raise ValueError(f"int4 packing needs an even input dim; got {q.shape[-1]}")
    u = (q.astype(np.int16) + 8).astype(np.uint8)  # offset binary: 0..15
    return (u[..., 0::2] | (u[..., 1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """Inverse of pack_int4: (out, in/2) uint8 -> (out, in) int8 in [-8, 7]."""
    low = (packed & 0x0F).astype(np.int8) - 8
    high = (packed >> 4).astype(np.int8) - 8
    return np.stack([low, high], axis=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def quantize_int4(w: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Group-wise int4 along the input dim. w: (out, in) -> packed (out, in/2) uint8, scales (out, in/g)."""
    out_f, in_f = w.shape
    g = int4_group_size(in_f, group_size)
    groups = w.astype(np.float32).reshape(out_f, in_f // g, g)  # (out, n_groups, g)
    scales = np.abs(groups).max(axis=2) / 7.0  # (out, n_groups)
    scales = np.where(scales == 0, 1.0, scales).astype(np.float32)
    q = np.clip(np.rint(groups / scales[..., None]), -8, 7).reshape(out_f, in_f)
    return pack_int4(q), scales


def dequantize_int4(packed: np.ndarray, scales: np.ndarray, zeros: np.ndarray | None = None,
                    g_idx: np.ndarray | None = None) -> np.ndarray:
    """w = (u - z) * s per group, u the stored nibble 0..15. Without `zeros` z is 8 (our symmetric format:
    u = q + 8); without `g_idx` column j is in group j // (in / n_groups).
    packed (out, in/2) uint8, scales and zeros (out, n_groups), g_idx (in,)."""
    u = unpack_int4(packed).astype(np.float32) + 8  # (out, in): the nibbles as stored
    z = np.full(scales.shape, 8, np.float32) if zeros is None else zeros.astype(np.float32)  # (out, n_groups)
    out_f, in_f = u.shape
    if g_idx is None:
        g = in_f // scales.shape[1]
        groups = u.reshape(out_f, -1, g) - z[..., None]  # (out, n_groups, g)
        return (groups * scales[..., None]).reshape(out_f, in_f)
    return (u - z[:, g_idx]) * scales[:, g_idx]  # (out, in): each column's own group


def dequantize_fp8(bits: np.ndarray, scales: np.ndarray, block_cols: int | None) -> np.ndarray:
    """float8 e4m3 (stored as its uint8 bits) times a scale per row and block of `block_cols` columns.
    bits (out, in) uint8; scales (out, n_col_blocks), one column when block_cols is None."""
    w = bits.view(ml_dtypes.float8_e4m3fn).astype(np.float32)  # (out, in)
    if block_cols is None:
        return w * scales[:, :1]
    return w * np.repeat(scales, block_cols, axis=1)[:, :w.shape[1]]


# ---------------------------------------------------------------------------------------------
# Loading for compute: everything float32, linears kept as (out, in) like the checkpoint (see model.linear).


@dataclass
class LayerWeights:
    attn_norm: np.ndarray  # (H,)
    qkv: np.ndarray  # ((n_heads + 2 n_kv_heads) head_dim, H)
    qkv_bias: np.ndarray | None
    o: np.ndarray  # (H, n_heads head_dim)
    o_bias: np.ndarray | None
    mlp_norm: np.ndarray  # (H,)
    gate_up: np.ndarray  # (2 I, H)
    down: np.ndarray  # (H, I)


@dataclass
class ModelWeights:
    embed_tokens: np.ndarray  # (V, H)
    layers: list[LayerWeights]
    final_norm: np.ndarray  # (H,)
    lm_head: LMHead  # over (V, H); embed_tokens itself when tied


def _linear(t: dict[str, np.ndarray], name: str, quantization: dict[str, Any] | None) -> np.ndarray:
    if name in t:
        w = t[name].astype(np.float32)
    elif quantization and quantization["mode"] == "int8":
        w = dequantize_int8(t[name + ".qweight"], t[name + ".scales"])
    elif quantization and quantization["mode"] == "int4":
        w = dequantize_int4(t[name + ".qweight"], t[name + ".scales"], t.get(name + ".zeros"), t.get(name + ".g_idx"))
    elif quantization and quantization["mode"] == "fp8":
        w = dequantize_fp8(t[name + ".qweight"], t[name + ".scales"], quantization.get("block_cols"))
    else:
        raise UnsupportedModelError(f"engine weights have no tensor {name!r} (quantization={quantization!r})")
    return np.ascontiguousarray(w)  # (out, in)


def build_model_weights(cfg: LlamaConfig, t: dict[str, np.ndarray]) -> ModelWeights:
    quantization = cfg.extra.get("quantization")

    def f32(name: str) -> np.ndarray:
        return np.ascontiguousarray(t[name].astype(np.float32))

    layers = []
    for i in range(cfg.num_hidden_layers):
        p = f"layers.{i}."
        layers.append(LayerWeights(
            attn_norm=f32(p + "attn_norm"),
            qkv=_linear(t, p + "qkv_proj", quantization),
            qkv_bias=f32(p + "qkv_bias") if cfg.qkv_bias else None,
            o=_linear(t, p + "o_proj", quantization),
            o_bias=f32(p + "o_bias") if cfg.o_bias else None,
            mlp_norm=f32(p + "mlp_norm"),
            gate_up=_linear(t, p + "gate_up_proj", quantization),
            down=_linear(t, p + "down_proj", quantization),
        ))
    embed = f32("embed_tokens")
    lm_head = embed if cfg.tie_word_embeddings else f32("lm_head")
    return ModelWeights(embed_tokens=embed, layers=layers, final_norm=f32("final_norm"), lm_head=LMHead(lm_head))


def load_weights(engine_dir: Path) -> tuple[LlamaConfig, ModelWeights]:
    cfg, tensors = read_engine_dir(engine_dir)
    return cfg, build_model_weights(cfg, tensors)
