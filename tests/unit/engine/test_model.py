"""The paged, chunked, batched forward equals a naive dense forward written from the paper."""

import numpy as np
import pytest

from trtpipe.engine import LlamaConfig
from trtpipe.engine.model import ForwardBatch, SeqChunk, forward, forward_dense, rope_inv_freq
from trtpipe.engine.weights import _hf_to_engine, build_model_weights

from .tiny import TINY_HF_CONFIG, hf_tensors

FAMILIES = {
    "llama": {},
    "qwen2_bias": {"architectures": ["Qwen2ForCausalLM"]},
    "mqa_head_dim_32": {"num_key_value_heads": 1, "head_dim": 32},
}


def dense_reference(t: dict, c: dict, ids: list[int]) -> np.ndarray:
    """Naive full-sequence Llama from HF tensor names: (T, V) logits, float64."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    nh, nkv = c["num_attention_heads"], c["num_key_value_heads"]
    d = c.get("head_dim") or c["hidden_size"] // nh
    T = len(ids)

    def norm(x, w):
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + c["rms_norm_eps"]) * w

    inv = c["rope_theta"] ** (-np.arange(0, d, 2) / d)
    ang = np.arange(T)[:, None] * inv  # (T, d/2)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))  # (T, d)

    def rope(x):  # (T, heads, d)
        rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
        return x * cos[:, None] + rot * sin[:, None]

    x = t["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, t[p + "input_layernorm.weight"])
        proj = {n: h @ t[f"{p}self_attn.{n}_proj.weight"].T + t.get(f"{p}self_attn.{n}_proj.bias", 0) for n in "qkv"}
        q = rope(proj["q"].reshape(T, nh, d))
        k = np.repeat(rope(proj["k"].reshape(T, nkv, d)), nh // nkv, axis=1)  # (T, nh, d)
        v = np.repeat(proj["v"].reshape(T, nkv, d), nh // nkv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(d) + mask
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        x = x + np.einsum("hqk,khd->qhd", a, v).reshape(T, nh * d) @ t[p + "self_attn.o_proj.weight"].T
        h = norm(x, t[p + "post_attention_layernorm.weight"])
        g, u = h @ t[p + "mlp.gate_proj.weight"].T, h @ t[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ t[p + "mlp.down_proj.weight"].T
    lm_head = t.get("lm_head.weight", t["model.embed_tokens.weight"])
    return norm(x, t["model.norm.weight"]) @ lm_head.T


def setup(family: str):
    c = {**TINY_HF_CONFIG, **FAMILIES[family]}
    t = hf_tensors(c, seed=5)
    cfg = LlamaConfig.from_hf_config(c)
    return c, t, cfg, build_model_weights(cfg, _hf_to_engine(cfg, t))


@pytest.mark.parametrize("family", FAMILIES)
def test_dense_forward_matches_naive_reference(family):
    c, t, cfg, w = setup(family)
    ids = np.random.default_rng(0).integers(0, 128, 21).tolist()
    ref = dense_reference(t, c, ids)
    ours = forward_dense(w, cfg, ids)
    assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("family", FAMILIES)
def test_paged_chunked_batched_forward_matches_dense(family):
    c, t, cfg, w = setup(family)
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 128, n).tolist() for n in (17, 9, 12)]
    bs, num_blocks = 4, 16
    shape = (cfg.num_hidden_layers, num_blocks, bs, cfg.num_key_value_heads, cfg.head_dim)
    k_cache, v_cache = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    # Scattered, non-contiguous block tables, so a wrong gather cannot pass by luck.
    ids = rng.permutation(num_blocks).tolist()
    tables = [ids[0:5], ids[5:8], ids[8:11]]
    # Chunk schedules per step (tokens per sequence); decode steps (1) mix with prefill chunks.
    schedule = [(5, 9, 3), (4, 0, 3), (1, 0, 6), (7, 0, 0)]
    done = [0, 0, 0]
    got = [[], [], []]
    inv_freq = rope_inv_freq(cfg)
    for step in schedule:
        chunks, owners = [], []
        for s, n in enumerate(step):
            if n:
                chunks.append(SeqChunk(seqs[s][done[s]:done[s] + n], done[s], tables[s], num_logits=n))
                owners.append((s, n))
        logits = forward(w, cfg, inv_freq, k_cache, v_cache, ForwardBatch.build(chunks, bs))
        row = 0
        for s, n in owners:
            got[s].append(logits[row:row + n])
            row += n
            done[s] += n
    assert done == [17, 9, 12]
    for s, ids_ in enumerate(seqs):
        ref = dense_reference(t, c, ids_)
        ours = np.concatenate(got[s])
        assert np.abs(ours - ref).max() < 1e-4 * np.abs(ref).max(), f"sequence {s}"


def test_decode_batch_builder_gives_the_batch_the_general_builder_gives():
    rng = np.random.default_rng(3)
    chunks = []
    for i in range(7):
        pos = int(rng.integers(0, 40))
        table = rng.permutation(64)[: pos // 4 + 1 + (i % 2)].tolist()  # some tables hold a block more than needed
        chunks.append(SeqChunk([int(rng.integers(0, 128))], pos, table, num_logits=1))
    fast, general = ForwardBatch._build_decode(chunks, 4), ForwardBatch._build_mixed(chunks, 4)
    assert ForwardBatch.build(chunks, 4).groups[0].bias.shape == fast.groups[0].bias.shape
    for name in ("token_ids", "positions", "slot_mapping", "logit_rows"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(general, name), err_msg=name)
    [fg], [gg] = fast.groups, general.groups
    np.testing.assert_array_equal(fg.rows, gg.rows)
    np.testing.assert_array_equal(fg.block_tables, gg.block_tables)
    np.testing.assert_array_equal(fg.bias, gg.bias)
