"""Tiny random checkpoints and small builders shared by the engine tests."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from trtpipe.engine import Engine, EngineLimits, LlamaConfig, convert_checkpoint
from trtpipe.engine.kv_cache import KVCacheManager
from trtpipe.engine.protocol import EngineRequest, SamplingParams
from trtpipe.engine.sampling import make_rng
from trtpipe.engine.sequence import Sequence

TINY_HF_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128, "hidden_size": 64,
    "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": False,
}


def hf_tensors(cfg: dict, seed: int = 0) -> dict[str, np.ndarray]:
    """Random HF-named float32 tensors; lm_head is scaled up so greedy argmaxes are far from ties."""
    rng = np.random.default_rng(seed)
    h, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    n_heads, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or h // n_heads

    def lin(o: int, i: int, scale: float = 1.0) -> np.ndarray:
        return (scale * rng.standard_normal((o, i)) / np.sqrt(i)).astype(np.float32)

    t = {"model.embed_tokens.weight": rng.standard_normal((v, h)).astype(np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
        t[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(h)).astype(np.float32)
        for name, o in (("q", n_heads * hd), ("k", n_kv * hd), ("v", n_kv * hd)):
            t[f"{p}self_attn.{name}_proj.weight"] = lin(o, h)
            if cfg["architectures"][0] == "Qwen2ForCausalLM":
                t[f"{p}self_attn.{name}_proj.bias"] = (0.1 * rng.standard_normal(o)).astype(np.float32)
        t[p + "self_attn.o_proj.weight"] = lin(h, n_heads * hd)
        t[p + "mlp.gate_proj.weight"] = lin(inter, h)
        t[p + "mlp.up_proj.weight"] = lin(inter, h)
        t[p + "mlp.down_proj.weight"] = lin(h, inter)
    t["model.norm.weight"] = np.ones(h, np.float32)
    if not cfg.get("tie_word_embeddings"):
        t["lm_head.weight"] = lin(v, h, scale=4.0)
    return t


def write_hf_checkpoint(d: Path, seed: int = 0, dtype=ml_dtypes.bfloat16, **overrides) -> Path:
    """A HF-format checkpoint dir (config.json + model.safetensors) with random weights."""
    cfg = {**TINY_HF_CONFIG, **overrides}
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(cfg))
    save_file({k: v.astype(dtype) for k, v in hf_tensors(cfg, seed).items()}, str(d / "model.safetensors"))
    return d


def build_engine_dir(root: Path, seed: int = 0, dtype: str = "float32", **overrides) -> Path:
    hf = write_hf_checkpoint(root / "hf", seed=seed, **overrides)
    convert_checkpoint(hf, root / "engine", dtype=dtype)
    return root / "engine"


def limits(**kw) -> EngineLimits:
    """Small limits so each test's KV cache is a few hundred kB."""
    base = dict(max_batch_size=16, max_num_tokens=256, max_seq_len=128, tokens_per_block=4,
                max_tokens_in_paged_kv_cache=2048)
    return EngineLimits(**{**base, **kw})


def greedy(**kw) -> SamplingParams:
    return SamplingParams(temperature=0.0, **kw)


def run_to_completion(engine: Engine, requests: list[EngineRequest]) -> dict[str, list]:
    """Add requests, step until done; returns request_id -> list of RequestOutput (in order)."""
    for r in requests:
        engine.add_request(r)
    outs: dict[str, list] = {r.request_id: [] for r in requests}
    for _ in range(10_000):
        if not engine.has_unfinished_requests():
            break
        for o in engine.step():
            outs.setdefault(o.request_id, []).append(o)
    assert not engine.has_unfinished_requests()
    return outs


def tokens_of(outputs: list) -> list[int]:
    return [t for o in outputs for t in o.new_token_ids]


def tiny_config(**kw) -> LlamaConfig:
    return LlamaConfig.from_hf_config({**TINY_HF_CONFIG, **kw})


def make_kv(num_blocks: int, block_size: int = 4, caching: bool = True) -> KVCacheManager:
    return KVCacheManager(tiny_config(), num_blocks, block_size, caching)


def make_sequence(seq_id: int, prompt: list[int], max_new_tokens: int = 8, **kw) -> Sequence:
    req = EngineRequest(f"r{seq_id}", list(prompt), max_new_tokens, **kw)
    return Sequence(seq_id, req, make_rng(0))
