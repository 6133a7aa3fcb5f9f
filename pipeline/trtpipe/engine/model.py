"""The Llama forward in numpy, over a paged KV cache.

One call runs a flattened batch: every scheduled sequence contributes a chunk of consecutive tokens
(a prefill chunk, one decode token, or its pending token plus draft tokens), all concatenated into
N rows. Matmuls run over all N rows at once; attention runs per group of sequences with the same
chunk length, padding only the context (key) axis. Compute is float32 throughout.

Notation: N flattened tokens, S sequences in a group, T query tokens per sequence, C context slots,
H hidden, V vocab.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .config import LlamaConfig
from .weights import LayerWeights, ModelWeights


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x * x, axis=-1, keepdims=True)  # (N, 1)
    return x / np.sqrt(variance + eps) * weight


def rope_inv_freq(cfg: LlamaConfig) -> np.ndarray:
    """theta^(-2i/d), with Llama 3's frequency-dependent stretch when rope_scaling says so."""
    d = cfg.head_dim
    inv_freq = 1.0 / cfg.rope_theta ** (np.arange(0, d, 2, dtype=np.float64) / d)  # (d/2,)
    s = cfg.rope_scaling
    if not s:
        return inv_freq
    # Llama 3: long wavelengths (low frequencies) are slowed by `factor`, short ones kept, and the
    # band between is interpolated linearly in 1/wavelength.
    old_len = s["original_max_position_embeddings"]
    low_freq_wavelen = old_len / s["low_freq_factor"]
    high_freq_wavelen = old_len / s["high_freq_factor"]
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s["factor"], inv_freq)
    smooth = (old_len / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
    smoothed = (1 - smooth) * scaled / s["factor"] + smooth * scaled
    is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(is_medium, smoothed, scaled)


def rope_cos_sin(inv_freq: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]  # (N, d/2)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate-half RoPE (the HF Llama layout): pairs are (i, i + d/2), not adjacent elements."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (N, heads, d/2) each
    c, s = cos[:, None, :], sin[:, None, :]  # (N, 1, d/2)
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=-1)  # (N, heads, d)


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Grouped-query attention of padded chunks against their gathered context.

    q: (S, T, n_heads, d); k, v: (S, C, n_kv, d); bias: (S, T, C), 0 where visible, -inf elsewhere.
    """
    S, T, n_heads, d = q.shape
    n_kv = k.shape[2]
    g = n_heads // n_kv
    # Query heads h*g .. h*g+g-1 share kv head h; fold them into the row axis of one matmul.
    q = q.reshape(S, T, n_kv, g, d).transpose(0, 2, 3, 1, 4).reshape(S, n_kv, g * T, d)  # (S, n_kv, gT, d)
    k_t = k.transpose(0, 2, 3, 1)  # (S, n_kv, d, C)
    scores = (q @ k_t) * (1.0 / math.sqrt(d))  # (S, n_kv, gT, C)
    scores = scores.reshape(S, n_kv, g, T, -1) + bias[:, None, None]  # (S, n_kv, g, T, C)
    probs = softmax(scores).reshape(S, n_kv, g * T, -1)  # (S, n_kv, gT, C)
    out = probs @ v.transpose(0, 2, 1, 3)  # (S, n_kv, gT, d)
    return out.reshape(S, n_kv, g, T, d).transpose(0, 3, 1, 2, 4).reshape(S, T, n_heads * d)  # (S, T, n_heads d)


def mlp(x: np.ndarray, gate_up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    gu = x @ gate_up  # (N, 2I)
    gate, up = np.split(gu, 2, axis=-1)  # (N, I) each
    # silu(g) = g * sigmoid(g), with sigmoid written through tanh so large |g| cannot overflow exp.
    return (gate * (0.5 + 0.5 * np.tanh(0.5 * gate)) * up) @ down  # (N, H)


@dataclass(frozen=True)
class SeqChunk:
    """One sequence's share of a forward: tokens at positions start..start+len-1, read through block_table."""
    token_ids: list[int]
    start_pos: int
    block_table: list[int]
    num_logits: int  # logits wanted for the last num_logits tokens of the chunk (0: none)


@dataclass
class AttnGroup:
    rows: np.ndarray  # (S*T,) rows of the flattened batch, sequence-major
    block_tables: np.ndarray  # (S, max_blocks) padded with block 0, which the bias hides
    bias: np.ndarray  # (S, T, C)


@dataclass
class ForwardBatch:
    token_ids: np.ndarray  # (N,)
    positions: np.ndarray  # (N,)
    slot_mapping: np.ndarray  # (N,) flat cache slot each new token's K/V is written to
    groups: list[AttnGroup]
    logit_rows: np.ndarray  # (R,) rows whose logits are returned, in chunk order

    @classmethod
    def build(cls, chunks: list[SeqChunk], block_size: int) -> ForwardBatch:
        token_ids, positions, logit_rows = [], [], []
        by_len: dict[int, list[tuple[int, SeqChunk]]] = {}
        row = 0
        for chunk in chunks:
            n = len(chunk.token_ids)
            token_ids.extend(chunk.token_ids)
            positions.append(np.arange(chunk.start_pos, chunk.start_pos + n))
            logit_rows.extend(range(row + n - chunk.num_logits, row + n))
            by_len.setdefault(n, []).append((row, chunk))
            row += n
        pos = np.concatenate(positions)
        tables = [np.asarray(c.block_table, dtype=np.int64) for c in chunks]
        lens = [len(c.token_ids) for c in chunks]
        slot_mapping = np.concatenate(
            [t[p // block_size] * block_size + p % block_size
             for t, p in zip(tables, np.split(pos, np.cumsum(lens)[:-1]), strict=True)]
        )
        groups = [_attn_group(members, pos, block_size) for members in by_len.values()]
        return cls(np.asarray(token_ids, dtype=np.int64), pos, slot_mapping, groups,
                   np.asarray(logit_rows, dtype=np.int64))


def _attn_group(members: list[tuple[int, SeqChunk]], positions: np.ndarray, block_size: int) -> AttnGroup:
    t = len(members[0][1].token_ids)
    rows = np.concatenate([np.arange(r, r + t) for r, _ in members])  # (S*T,)
    num_blocks = [(c.start_pos + t + block_size - 1) // block_size for _, c in members]
    tables = np.zeros((len(members), max(num_blocks)), dtype=np.int64)  # (S, max_blocks)
    for i, (_, c) in enumerate(members):
        tables[i, : num_blocks[i]] = c.block_table[: num_blocks[i]]
    pos = positions[rows].reshape(len(members), t)  # (S, T)
    key_pos = np.arange(tables.shape[1] * block_size)  # (C,)
    # Causal within the sequence; padded slots sit past every query position, so they are hidden too.
    bias = np.where(key_pos[None, None, :] <= pos[:, :, None], 0.0, -np.inf).astype(np.float32)  # (S, T, C)
    return AttnGroup(rows, tables, bias)


def decoder_layer(x: np.ndarray, w: LayerWeights, cfg: LlamaConfig, cos: np.ndarray, sin: np.ndarray,
                  k_cache: np.ndarray, v_cache: np.ndarray, batch: ForwardBatch) -> np.ndarray:
    """x: (N, H); k_cache, v_cache: this layer's (num_blocks, block_size, n_kv, d), written in place."""
    n_heads, n_kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    N = x.shape[0]
    h = rms_norm(x, w.attn_norm, cfg.rms_norm_eps)
    qkv = h @ w.qkv  # (N, (n_heads + 2 n_kv) d)
    if w.qkv_bias is not None:
        qkv += w.qkv_bias
    q = qkv[:, : n_heads * d].reshape(N, n_heads, d)  # (N, n_heads, d)
    k = qkv[:, n_heads * d : (n_heads + n_kv) * d].reshape(N, n_kv, d)  # (N, n_kv, d)
    v = qkv[:, (n_heads + n_kv) * d :].reshape(N, n_kv, d)  # (N, n_kv, d)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)

    num_blocks, block_size = k_cache.shape[:2]
    k_cache.reshape(num_blocks * block_size, n_kv, d)[batch.slot_mapping] = k
    v_cache.reshape(num_blocks * block_size, n_kv, d)[batch.slot_mapping] = v

    attn = np.empty((N, n_heads * d), dtype=np.float32)  # (N, n_heads d)
    for g in batch.groups:
        S, T = g.bias.shape[:2]
        ctx_k = k_cache[g.block_tables].reshape(S, -1, n_kv, d)  # (S, C, n_kv, d)
        ctx_v = v_cache[g.block_tables].reshape(S, -1, n_kv, d)  # (S, C, n_kv, d)
        attn[g.rows] = attention(q[g.rows].reshape(S, T, n_heads, d), ctx_k, ctx_v, g.bias).reshape(S * T, -1)
    o = attn @ w.o  # (N, H)
    if w.o_bias is not None:
        o += w.o_bias
    x = x + o
    return x + mlp(rms_norm(x, w.mlp_norm, cfg.rms_norm_eps), w.gate_up, w.down)


def forward(weights: ModelWeights, cfg: LlamaConfig, inv_freq: np.ndarray,
            k_cache: np.ndarray, v_cache: np.ndarray, batch: ForwardBatch) -> np.ndarray:
    """Run the batch, writing its K/V into the caches (layers, num_blocks, block_size, n_kv, d).

    Returns float32 logits (R, V) for batch.logit_rows only, so the vocab matmul skips prefill rows.
    """
    cos, sin = rope_cos_sin(inv_freq, batch.positions)  # (N, d/2) each
    x = weights.embed_tokens[batch.token_ids]  # (N, H)
    for i, layer in enumerate(weights.layers):
        x = decoder_layer(x, layer, cfg, cos, sin, k_cache[i], v_cache[i], batch)
    h = rms_norm(x[batch.logit_rows], weights.final_norm, cfg.rms_norm_eps)  # (R, H)
    return h @ weights.lm_head  # (R, V)


def forward_dense(weights: ModelWeights, cfg: LlamaConfig, token_ids: list[int]) -> np.ndarray:
    """Logits (T, V) for every position of one sequence, through a private one-block cache."""
    t = len(token_ids)
    shape = (cfg.num_hidden_layers, 1, t, cfg.num_key_value_heads, cfg.head_dim)
    k_cache, v_cache = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    batch = ForwardBatch.build([SeqChunk(list(token_ids), 0, [0], num_logits=t)], block_size=t)
    return forward(weights, cfg, rope_inv_freq(cfg), k_cache, v_cache, batch)
