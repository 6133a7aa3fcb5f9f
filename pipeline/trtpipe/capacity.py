"""Capacity arithmetic: a model's architecture, its bytes per parameter and per KV token, and how engines' weights,
reserves and KV pools fit on a GPU. The bottom of the planning stack: the planner (plan.py) and the machine
preflight (trt/preflight.py) both compute from here, so they cannot disagree.

    weights    = linear layers at the format's bytes/param + embedding, lm_head and norms at the dtype
                 (ModelOpt and weight-only conversion leave embedding and lm_head unquantized); the format is
                 the config's quantization, or the one a pre-quantized local checkpoint already has
    KV/token   = layers * 2 (K and V) * kv_heads * head_dim * KV dtype bytes        (per GPU: / tp, / pp)
    KV pool    = kv_cache_free_gpu_mem_fraction * (GPU memory - weights - activation reserve),
                 capped by engine.max_tokens_in_paged_kv_cache (TensorRT-LLM takes the smaller)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from trtpipe.config import BuildConfig
from trtpipe.engine.checkpoint_quant import CheckpointQuant, read_checkpoint_quant
from trtpipe.engine.config import UnsupportedModelError
from trtpipe.errors import ConfigError
from trtpipe.hardware import GIB, GpuSpec

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
RUNTIME_OVERHEAD_BYTES = 2 * GIB  # CUDA context, cuBLAS/NCCL workspaces, decoder buffers (per process)
TP_CANDIDATES = (1, 2, 4, 8)
UTILIZATION_TARGET = 0.7  # plan replicas to run at 70% of measured throughput: headroom for bursts


@dataclass(frozen=True)
class ModelArch:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    head_dim: int = 0  # 0: hidden_size // num_heads
    tie_word_embeddings: bool = False

    def __post_init__(self):
        if not self.head_dim:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)

    @classmethod
    def from_hf_config(cls, cfg: dict) -> "ModelArch":
        return cls(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                   num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
                   num_kv_heads=cfg.get("num_key_value_heads") or cfg["num_attention_heads"],
                   vocab_size=cfg["vocab_size"], head_dim=cfg.get("head_dim") or 0,
                   tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)))

    @property
    def layer_linear_params(self) -> int:
        q_out, kv_out = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attention = self.hidden_size * (q_out + 2 * kv_out) + q_out * self.hidden_size
        return attention + 3 * self.hidden_size * self.intermediate_size  # gate, up, down

    @property
    def embedding_params(self) -> int:
        return self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        return (2 * self.num_layers + 1) * self.hidden_size

    @property
    def num_params(self) -> int:
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.num_layers * self.layer_linear_params + self.embedding_params + lm_head + self.norm_params


# From each checkpoint's config.json at the revision pinned in build_configs/ (Llama 3.x share a
# 128256-token vocabulary, which is what makes 3.2-1B a valid draft for 3.1-8B/70B).
_LLAMA_31_8B = ModelArch(4096, 14336, 32, 32, 8, 128256, 128)
_LLAMA_32_1B = ModelArch(2048, 8192, 16, 32, 8, 128256, 64, tie_word_embeddings=True)
_LLAMA_31_70B = ModelArch(8192, 28672, 80, 64, 8, 128256, 128)
# An EAGLE-3 head for Llama 3.1 8B: one decoder layer over the target's hidden size with its own embedding and
# LM head (an upper bound: its LM head covers a reduced draft vocabulary). Not read from a config.json here.
_EAGLE3_LLAMA_31_8B = ModelArch(4096, 14336, 1, 32, 8, 128256, 128)
# TinyLlama 1.1B Chat v1.0's config.json (the GPU smoke-test model).
_TINYLLAMA_11B = ModelArch(2048, 5632, 22, 32, 4, 32000, 64)
KNOWN_ARCHITECTURES = {
    "TinyLlama/TinyLlama-1.1B-Chat-v1.0": _TINYLLAMA_11B,
    "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B": _EAGLE3_LLAMA_31_8B,
    "meta-llama/Llama-3.1-8B-Instruct": _LLAMA_31_8B, "meta-llama/Llama-3.1-8B": _LLAMA_31_8B,
    "meta-llama/Llama-3.2-1B-Instruct": _LLAMA_32_1B, "meta-llama/Llama-3.2-1B": _LLAMA_32_1B,
    "meta-llama/Llama-3.1-70B-Instruct": _LLAMA_31_70B, "meta-llama/Llama-3.1-70B": _LLAMA_31_70B,
}


def arch_for(config: BuildConfig) -> ModelArch:
    src = config.source
    if src.synthetic:
        from trtpipe.stages.synthetic import PRESETS

        if src.synthetic not in PRESETS:
            raise ConfigError(f"unknown synthetic checkpoint {src.synthetic!r}", where=f"{config.name}: source",
                              fix=f"use one of: {', '.join(PRESETS)}")
        p = PRESETS[src.synthetic]
        return ModelArch(p.hidden_size, p.intermediate_size, p.num_hidden_layers, p.num_attention_heads,
                         p.num_key_value_heads, p.vocab_target)
    if src.path:
        path = Path(src.path).expanduser() / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path} does not exist", where=f"{config.name}: source.path",
                              fix="point source.path at a Hugging Face checkpoint directory")
        return ModelArch.from_hf_config(json.loads(path.read_text()))
    if src.hf in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[src.hf]
    raise ConfigError(f"the architecture of {src.hf} is not in trtpipe's table and nothing is downloaded to plan",
                      where=f"{config.name}: source.hf",
                      fix="add it to trtpipe.plan.KNOWN_ARCHITECTURES, or plan a config whose source.path has "
                          "its config.json")


def checkpoint_quant_for(config: BuildConfig) -> CheckpointQuant | None:
    """The quantization a local checkpoint already carries (None for full precision, and for a hub or synthetic
    source: a hub checkpoint's config is read at fetch, not at plan time)."""
    if not config.source.path:
        return None
    path = Path(config.source.path).expanduser()
    if not (path / "config.json").is_file():
        return None
    try:
        return read_checkpoint_quant(path)
    except UnsupportedModelError as e:
        raise ConfigError(f"cannot read the checkpoint's quantization: {e}", where=f"{config.name}: source.path",
                          fix="check config.json's quantization_config (or hf_quant_config.json)") from None


def linear_bytes_per_param(config: BuildConfig) -> float:
    q = config.quantization
    if q is None:
        prequantized = checkpoint_quant_for(config)
        if prequantized is not None and prequantized.scheme != "unknown":
            # The checkpoint's own format: packed weights plus its fp16 scales (and int4 zero points) per group.
            return prequantized.weight_bytes_per_param(dtype_bytes=2.0)
        return DTYPE_BYTES[config.dtype]
    per_group_scales = 2 / q.group_size  # one fp16 scale per group
    return {"fp8": 1.0, "nvfp4": 0.5 + 1 / 16,  # one fp8 scale per 16 weights
            "int8_sq": 1.0, "int8_wo": 1.0, "int4_wo": 0.5,
            "int4_awq": 0.5 + per_group_scales, "w4a8_awq": 0.5 + per_group_scales}[q.format]


def kv_bytes_per_element(config: BuildConfig) -> int:
    q = config.quantization
    return 1 if q and q.kv_cache_dtype else DTYPE_BYTES[config.dtype]


@dataclass(frozen=True)
class EngineMemory:
    """One engine's footprint on one GPU (the most loaded rank)."""

    name: str
    tp: int
    pp: int
    weight_bytes: int
    embedding_bytes: int  # part of weight_bytes that decode does not read in full (a row lookup)
    activation_bytes: int
    kv_bytes_per_token: int  # per GPU
    kv_bytes_per_token_total: int  # whole model, all ranks

    @property
    def reserve_bytes(self) -> int:
        return self.activation_bytes + RUNTIME_OVERHEAD_BYTES


def engine_memory(config: BuildConfig, arch: ModelArch, tp: int | None = None) -> EngineMemory:
    tp = tp or config.parallelism.tp
    pp = config.parallelism.pp
    dt = DTYPE_BYTES[config.dtype]
    layers_per_rank = math.ceil(arch.num_layers / pp)
    linear = layers_per_rank * arch.layer_linear_params * linear_bytes_per_param(config) / tp
    # NOTE: conservative: the input embedding is replicated on every rank (convert_checkpoint's default
    # without --use_parallel_embedding); lm_head is vocab-parallel; TensorRT-LLM materializes lm_head even
    # when the HF checkpoint ties it to the embedding.
    embedding = arch.embedding_params * dt
    lm_head = arch.embedding_params * dt / tp
    weights = int(linear + embedding + lm_head + arch.norm_params * dt)
    e = config.engine
    draft_len = config.speculation.max_draft_len if config.speculation else 0
    q_out, kv_out = arch.num_heads * arch.head_dim, arch.num_kv_heads * arch.head_dim
    # Largest live activations of one layer for a full token budget (residual, fused QKV, fused gate/up),
    # doubled for TensorRT's workspace and imperfect buffer reuse; plus fp32 logits for every decode slot.
    per_token = arch.hidden_size + (q_out + 2 * kv_out) / tp + 2 * arch.intermediate_size / tp
    activations = int(e.max_num_tokens * per_token * 2 * 2
                      + e.max_batch_size * (draft_len + 1) * arch.vocab_size / tp * 4)
    kv_heads_per_rank = math.ceil(arch.num_kv_heads / tp)
    kv_el = kv_bytes_per_element(config)
    return EngineMemory(name=config.name, tp=tp, pp=pp, weight_bytes=weights, embedding_bytes=int(embedding),
                        activation_bytes=activations,
                        kv_bytes_per_token=layers_per_rank * 2 * kv_heads_per_rank * arch.head_dim * kv_el,
                        kv_bytes_per_token_total=arch.num_layers * 2 * arch.num_kv_heads * arch.head_dim * kv_el)


@dataclass(frozen=True)
class KvPool:
    name: str
    pool_bytes: int
    tokens: int
    limited_by: str  # "memory fraction" or "max_tokens_in_paged_kv_cache"


def kv_pools(gpu: GpuSpec, engines: list[tuple[BuildConfig, EngineMemory]]) -> list[KvPool]:
    """KV pools of engines sharing each GPU, loaded in order (the target first). Each engine's executor
    allocates fraction * (memory still free) after all weights and reserves, capped by max_tokens."""
    free = gpu.memory_bytes - sum(m.weight_bytes + m.reserve_bytes for _, m in engines)
    pools = []
    for config, mem in engines:
        by_fraction = int(config.serving.kv_cache_free_gpu_mem_fraction * max(free, 0))
        cap = config.engine.max_tokens_in_paged_kv_cache
        if cap is not None and cap * mem.kv_bytes_per_token < by_fraction:
            pool, limit = cap * mem.kv_bytes_per_token, "max_tokens_in_paged_kv_cache"
        else:
            pool, limit = by_fraction, "memory fraction"
        tokens = pool // mem.kv_bytes_per_token // config.engine.tokens_per_block * config.engine.tokens_per_block
        pools.append(KvPool(config.name, pool, tokens, limit))
        free -= pool
    return pools


def concurrent_sequences(config: BuildConfig, pool: KvPool, seq_tokens: int) -> int:
    """Sequences of seq_tokens that fit at once: whole blocks each, and never more than the batch."""
    tpb = config.engine.tokens_per_block
    blocks_per_seq = math.ceil(seq_tokens / tpb)
    return min(config.engine.max_batch_size, (pool.tokens // tpb) // blocks_per_seq)
