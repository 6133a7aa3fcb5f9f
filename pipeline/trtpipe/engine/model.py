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
from itertools import chain

import numpy as np

from .config import LlamaConfig
from .weights import LayerWeights, ModelWeights


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    # np.mean's Python wrapper costs more than the sum at decode sizes; add.reduce / H is the same arithmetic.
    variance = np.add.reduce(x * x, axis=-1, keepdims=True)  # (N, 1)
    variance /= x.shape[-1]
    variance += eps
    np.sqrt(variance, out=variance)
    return x / variance * weight


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
    """Per-row factors for apply_rope, (N, 1, d) each: cos twice, and sin with its first half negated.

    Built once per forward, so each layer's rotation is two multiplies and an add.
    """
    angles = positions[:, None].astype(np.float64) * inv_freq[None, :]  # (N, d/2)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    return np.concatenate([cos, cos], -1)[:, None], np.concatenate([-sin, sin], -1)[:, None]


def apply_rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate-half RoPE (the HF Llama layout): pairs are (i, i + d/2), not adjacent elements.

    x: (N, heads, d); cos, sin: rope_cos_sin's (N, 1, d). Halves [x1*c - x2*s, x2*c + x1*s], bit for bit.
    """
    half = x.shape[-1] // 2
    swapped = np.concatenate([x[..., half:], x[..., :half]], axis=-1)  # (N, heads, d): [x2, x1]
    out = x * cos
    swapped *= sin
    out += swapped
    return out


def softmax(x: np.ndarray, axis: int = -1, *, in_place: bool = False) -> np.ndarray:
    # The ufuncs' own reductions: ndarray.max/sum add a Python wrapper call each, per layer at decode sizes.
    e = x if in_place else x.copy()
    e -= np.maximum.reduce(x, axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e


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
    scores = (q @ k_t).reshape(S, n_kv, g, T, -1)  # (S, n_kv, g, T, C)
    scores *= 1.0 / math.sqrt(d)
    scores += bias[:, None, None]
    probs = softmax(scores, in_place=True).reshape(S, n_kv, g * T, -1)  # (S, n_kv, gT, C)
    out = probs @ v.transpose(0, 2, 1, 3)  # (S, n_kv, gT, d)
    return out.reshape(S, n_kv, g, T, d).transpose(0, 3, 1, 2, 4).reshape(S, T, n_heads * d)  # (S, T, n_heads d)


# OpenBLAS's sgemm packs its right-hand operand into panels on every call. For a batch of a few rows that
# operand is the whole weight matrix and packing it costs more than the multiply; with the weight on the
# left, (out, in) @ (in, N), the packed operand is the small activation. Above ~16 rows packing the weight
# pays off again. bench/gemm_forms.py measures both forms on the model's shapes (16 rows: ~1.5-1.9x).
SMALL_BATCH_ROWS = 16
# Not for a weight with tens of thousands of rows: that one is past the caches, and one weight-left call over
# all of it returned transposed outputs that every row-wise step after it read with a stride. The vocab
# projection has its own forms (lm_head.py); this guards a decoder linear of that size.
LARGE_OUT_FEATURES = 8192


def linear(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x (N, in) times w (out, in) transposed -> (N, out)."""
    if x.shape[0] <= SMALL_BATCH_ROWS and w.shape[0] <= LARGE_OUT_FEATURES:
        return (w @ x.T).T
    return x @ w.T


def mlp(x: np.ndarray, gate_up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """SwiGLU: down(silu(gate(x)) * up(x))."""
    gu = linear(x, gate_up)  # (N, 2I)
    inter = gu.shape[1] // 2
    gate, up = gu[:, :inter], gu[:, inter:]  # (N, I) each
    # silu(g) = g * sigmoid(g), with sigmoid written through tanh so large |g| cannot overflow exp.
    # In place on one temporary: every elementwise pass here runs over all N rows.
    h = np.multiply(gate, 0.5)  # (N, I)
    np.tanh(h, out=h)
    h *= 0.5
    h += 0.5
    h *= gate
    h *= up
    return linear(h, down)  # (N, H)


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
        # Built with whole-array operations: its cost is paid every step for every sequence.
        if all(len(c.token_ids) == 1 and c.num_logits == 1 for c in chunks):
            return cls._build_decode(chunks, block_size)
        return cls._build_mixed(chunks, block_size)

    @classmethod
    def _build_mixed(cls, chunks: list[SeqChunk], block_size: int) -> ForwardBatch:
        """Any mix of prefill chunks, decode tokens and draft verifications."""
        B = len(chunks)
        lens = np.fromiter((len(c.token_ids) for c in chunks), np.int64, B)  # (B,)
        first_row = np.cumsum(lens) - lens  # (B,)
        N = int(lens.sum())
        seq_of_row = np.repeat(np.arange(B), lens)  # (N,)
        start_pos = np.fromiter((c.start_pos for c in chunks), np.int64, B)  # (B,)
        pos = start_pos[seq_of_row] + np.arange(N) - first_row[seq_of_row]  # (N,)
        width = max(len(c.block_table) for c in chunks)
        tables = np.array([c.block_table + [0] * (width - len(c.block_table)) for c in chunks],
                          dtype=np.int64)  # (B, max_blocks), padded with block 0
        slot_mapping = tables[seq_of_row, pos // block_size] * block_size + pos % block_size  # (N,)
        num_logits = np.fromiter((c.num_logits for c in chunks), np.int64, B)  # (B,)
        logit_rows = _last_rows(first_row + lens, num_logits)  # (R,) in chunk order
        groups = [_attn_group(np.flatnonzero(lens == t), int(t), first_row, pos, tables, block_size)
                  for t in np.unique(lens)]
        token_ids = np.fromiter(chain.from_iterable(c.token_ids for c in chunks), np.int64, N)
        return cls(token_ids, pos, slot_mapping, groups, logit_rows)

    @classmethod
    def _build_decode(cls, chunks: list[SeqChunk], block_size: int) -> ForwardBatch:
        """The common step: one token per sequence, each sampled. Same batch as build(), fewer array ops."""
        B = len(chunks)
        pos = np.fromiter((c.start_pos for c in chunks), np.int64, B)  # (B,) one row per sequence
        width = int(pos.max()) // block_size + 1  # blocks any query can see
        tables = np.array([c.block_table[:width] + [0] * (width - len(c.block_table[:width])) for c in chunks],
                          dtype=np.int64)  # (B, width), padded with block 0
        rows = np.arange(B)
        slot_mapping = tables[rows, pos // block_size] * block_size + pos % block_size  # (B,)
        key_pos = np.arange(width * block_size)  # (C,)
        bias = np.where(key_pos[None, None, :] <= pos[:, None, None], 0.0, -np.inf).astype(np.float32)  # (B, 1, C)
        token_ids = np.fromiter((c.token_ids[0] for c in chunks), np.int64, B)
        return cls(token_ids, pos, slot_mapping, [AttnGroup(rows, tables, bias)], rows)


def _last_rows(ends: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rows ends[i] - counts[i] .. ends[i] - 1 for every i, concatenated."""
    offsets = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)  # 0.. within each run
    return np.repeat(ends - counts, counts) + offsets


def _attn_group(members: np.ndarray, t: int, first_row: np.ndarray, positions: np.ndarray, tables: np.ndarray,
                block_size: int) -> AttnGroup:
    """The chunks `members` (indices into the batch), all t tokens long."""
    rows = (first_row[members][:, None] + np.arange(t)).reshape(-1)  # (S*T,)
    pos = positions[rows].reshape(len(members), t)  # (S, T)
    num_blocks = int(pos[:, -1].max()) // block_size + 1
    key_pos = np.arange(num_blocks * block_size)  # (C,)
    # Causal within the sequence; padded slots sit past every query position, so they are hidden too.
    bias = np.where(key_pos[None, None, :] <= pos[:, :, None], 0.0, -np.inf).astype(np.float32)  # (S, T, C)
    return AttnGroup(rows, tables[members, :num_blocks], bias)


def decoder_layer(x: np.ndarray, w: LayerWeights, cfg: LlamaConfig, cos: np.ndarray, sin: np.ndarray,
                  k_cache: np.ndarray, v_cache: np.ndarray, batch: ForwardBatch) -> np.ndarray:
    """x: (N, H); k_cache, v_cache: this layer's (num_blocks, block_size, n_kv, d), written in place."""
    n_heads, n_kv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
    N = x.shape[0]
    h = rms_norm(x, w.attn_norm, cfg.rms_norm_eps)
    qkv = linear(h, w.qkv)  # (N, (n_heads + 2 n_kv) d)
    if w.qkv_bias is not None:
        qkv += w.qkv_bias
    # q and k sit side by side in qkv: one rotation for both.
    qk = apply_rope(qkv[:, : (n_heads + n_kv) * d].reshape(N, n_heads + n_kv, d), cos, sin)
    q, k = qk[:, :n_heads], qk[:, n_heads:]  # (N, n_heads, d), (N, n_kv, d)
    v = qkv[:, (n_heads + n_kv) * d :].reshape(N, n_kv, d)  # (N, n_kv, d)

    num_blocks, block_size = k_cache.shape[:2]
    k_cache.reshape(num_blocks * block_size, n_kv, d)[batch.slot_mapping] = k
    v_cache.reshape(num_blocks * block_size, n_kv, d)[batch.slot_mapping] = v

    if len(batch.groups) == 1:  # every row in one group, in order (a decode step): no row gather or scatter
        attn = _group_attention(q, k_cache, v_cache, batch.groups[0]).reshape(N, n_heads * d)  # (N, n_heads d)
    else:
        attn = np.empty((N, n_heads * d), dtype=np.float32)  # (N, n_heads d)
        for g in batch.groups:
            attn[g.rows] = _group_attention(q[g.rows], k_cache, v_cache, g).reshape(len(g.rows), -1)
    o = linear(attn, w.o)  # (N, H)
    if w.o_bias is not None:
        o += w.o_bias
    x = x + o
    return x + mlp(rms_norm(x, w.mlp_norm, cfg.rms_norm_eps), w.gate_up, w.down)


def _group_attention(q: np.ndarray, k_cache: np.ndarray, v_cache: np.ndarray, g: AttnGroup) -> np.ndarray:
    """q: the group's rows (S*T, n_heads, d) -> (S, T, n_heads d), over its context gathered from the cache."""
    S, T = g.bias.shape[:2]
    n_kv, d = k_cache.shape[2:]
    ctx_k = k_cache[g.block_tables].reshape(S, -1, n_kv, d)  # (S, C, n_kv, d)
    ctx_v = v_cache[g.block_tables].reshape(S, -1, n_kv, d)  # (S, C, n_kv, d)
    return attention(q.reshape(S, T, -1, d), ctx_k, ctx_v, g.bias)


def forward(weights: ModelWeights, cfg: LlamaConfig, inv_freq: np.ndarray,
            k_cache: np.ndarray, v_cache: np.ndarray, batch: ForwardBatch) -> np.ndarray:
    """Run the batch, writing its K/V into the caches (layers, num_blocks, block_size, n_kv, d).

    Returns float32 logits (R, V) for batch.logit_rows only, so the vocab matmul skips prefill rows.
    """
    cos, sin = rope_cos_sin(inv_freq, batch.positions)  # (N, d/2) each
    x = weights.embed_tokens[batch.token_ids]  # (N, H)
    for i, layer in enumerate(weights.layers):
        x = decoder_layer(x, layer, cfg, cos, sin, k_cache[i], v_cache[i], batch)
    if len(batch.logit_rows) < len(x):  # prefill rows need no logits; a decode step wants every row
        x = x[batch.logit_rows]
    h = rms_norm(x, weights.final_norm, cfg.rms_norm_eps)  # (R, H)
    return weights.lm_head(h)  # (R, V)


def forward_dense(weights: ModelWeights, cfg: LlamaConfig, token_ids: list[int]) -> np.ndarray:
    """Logits (T, V) for every position of one sequence, through a private one-block cache."""
    t = len(token_ids)
    shape = (cfg.num_hidden_layers, 1, t, cfg.num_key_value_heads, cfg.head_dim)
    k_cache, v_cache = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    batch = ForwardBatch.build([SeqChunk(list(token_ids), 0, [0], num_logits=t)], block_size=t)
    return forward(weights, cfg, rope_inv_freq(cfg), k_cache, v_cache, batch)
