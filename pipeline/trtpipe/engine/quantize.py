"""Weight-only quantization of an engine dir, with the logit delta it costs measured on the spot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .model import forward_dense
from .weights import (
    LAYER_LINEARS,
    build_model_weights,
    int4_group_size,
    load_weights,
    quantize_int4,
    quantize_int8,
    read_engine_dir,
    write_engine_dir,
)

QUANT_MODES = ("int8", "int4")
NUM_DEFAULT_EVAL_TOKENS = 64


def _is_layer_linear(name: str) -> bool:
    return name.startswith("layers.") and name.rsplit(".", 1)[-1] in LAYER_LINEARS


def _perplexity(logits: np.ndarray, token_ids: list[int]) -> float:
    """exp of the mean next-token NLL; logits: (T, V), predicting token_ids[1:]."""
    z = logits[:-1].astype(np.float64)  # (T-1, V)
    m = z.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(z - m).sum(axis=-1)) + m[:, 0]  # (T-1,)
    nll = log_z - z[np.arange(len(z)), token_ids[1:]]
    return float(math.exp(nll.mean()))


def quantize_checkpoint(
    engine_in: Path,
    engine_out: Path,
    mode: str,
    group_size: int = 128,
    eval_token_ids: list[int] | None = None,
) -> dict[str, Any]:
    """Quantize the decoder-block linears of engine_in into engine_out; report the logit delta.

    int8: per-output-channel symmetric. int4: symmetric groups of `group_size` along the input dim
    (the largest divisor of the dim below it where it does not divide), two values per uint8.
    Embeddings, norms and lm_head stay in the input's storage dtype.
    """
    if mode not in QUANT_MODES:
        raise ValueError(f"`mode` must be one of {list(QUANT_MODES)}. Given: {mode!r}")
    if group_size < 1:
        raise ValueError(f"`group_size` must be >= 1. Given: {group_size}")
    cfg, tensors = read_engine_dir(Path(engine_in))
    if cfg.extra.get("quantization"):
        raise ValueError(f"{engine_in} is already quantized ({cfg.extra['quantization']}); start from a float engine")
    if eval_token_ids is None:
        rng = np.random.default_rng(0)
        eval_token_ids = rng.integers(0, cfg.vocab_size, NUM_DEFAULT_EVAL_TOKENS).tolist()
    if len(eval_token_ids) < 2 or not all(0 <= t < cfg.vocab_size for t in eval_token_ids):
        raise ValueError(f"`eval_token_ids` needs >= 2 ids in [0, {cfg.vocab_size}). Given: {len(eval_token_ids)} ids")

    out: dict[str, np.ndarray] = {}
    group_sizes: set[int] = set()
    for name, t in tensors.items():
        if not _is_layer_linear(name):
            out[name] = t
        elif mode == "int8":
            out[name + ".qweight"], out[name + ".scales"] = quantize_int8(t)
        else:
            out[name + ".qweight"], out[name + ".scales"] = quantize_int4(t, group_size)
            group_sizes.add(int4_group_size(t.shape[1], group_size))
    quantization = {"mode": mode, "group_size": group_size if mode == "int4" else None,
                    "symmetric": True, "quantized": list(LAYER_LINEARS)}
    write_engine_dir(Path(engine_out), cfg, out, weight_dtype=cfg.extra.get("weight_dtype", "float32"),
                     quantization=quantization)

    # Evaluate what was written, read back through the loader the engine uses.
    ref = forward_dense(build_model_weights(cfg, tensors), cfg, eval_token_ids)  # (T, V)
    qcfg, qweights = load_weights(Path(engine_out))
    quant = forward_dense(qweights, qcfg, eval_token_ids)  # (T, V)
    delta = np.abs(ref - quant)
    return {
        "mode": mode,
        "group_size": group_size,
        "group_sizes_used": sorted(group_sizes),
        "num_eval_tokens": len(eval_token_ids),
        "max_abs_logit_delta": float(delta.max()),
        "mean_abs_logit_delta": float(delta.mean()),
        "max_abs_logit_ref": float(np.abs(ref).max()),
        "top1_agreement": float(np.mean(ref.argmax(-1) == quant.argmax(-1))),
        "perplexity_ref": _perplexity(ref, eval_token_ids),
        "perplexity_quant": _perplexity(quant, eval_token_ids),
        "bytes_in": int(sum(t.nbytes for t in tensors.values())),
        "bytes_out": int(sum(t.nbytes for t in out.values())),
    }
