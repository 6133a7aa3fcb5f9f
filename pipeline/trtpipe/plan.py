"""`trtpipe plan`: how a build config lands on a GPU, computed before anything is downloaded or built.

Every number is arithmetic on the model's architecture (a table of known checkpoints, or a local
config.json), the quantization format and the engine limits:

    weights    = linear layers at the format's bytes/param + embedding, lm_head and norms at the dtype
                 (ModelOpt and weight-only conversion leave embedding and lm_head unquantized)
    KV/token   = layers * 2 (K and V) * kv_heads * head_dim * KV dtype bytes        (per GPU: / tp, / pp)
    KV pool    = kv_cache_free_gpu_mem_fraction * (GPU memory - weights - activation reserve),
                 capped by engine.max_tokens_in_paged_kv_cache (TensorRT-LLM takes the smaller)
    decode     = memory bandwidth / bytes read per generated token, at batch 1 (an upper bound)

The activation reserve is an estimate (largest per-layer activations for max_num_tokens, logits, and a
fixed runtime overhead); `trtpipe bench` on the real GPU is the measurement that counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import click

from trtpipe.config import BuildConfig, load_config, load_draft
from trtpipe.errors import ConfigError
from trtpipe.trt.gpus import GIB, GpuSpec, get_gpu

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


def linear_bytes_per_param(config: BuildConfig) -> float:
    q = config.quantization
    if q is None:
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


@dataclass
class Plan:
    config: BuildConfig
    draft: BuildConfig | None
    gpu: GpuSpec
    arch: ModelArch
    draft_arch: ModelArch | None
    input_len: int
    output_len: int
    target: EngineMemory
    draft_memory: EngineMemory | None
    pools: list[KvPool]
    concurrency: int
    fits: bool
    tp_table: list[dict] = field(default_factory=list)
    smallest_tp: int | None = None
    smallest_tp_full_batch: int | None = None
    decode_tokens_per_s: float = 0.0  # batch 1, per sequence, bandwidth bound
    decode_tokens_per_s_at_concurrency: float = 0.0  # aggregate, bandwidth bound
    host_ram_bytes: int = 0
    calibration_gpu_bytes: int = 0
    request_rate: float | None = None
    per_replica_rps: float | None = None
    per_replica_rps_measured: bool = False
    replicas: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def world_size(self) -> int:
        return self.config.parallelism.world_size


def _engines(config: BuildConfig, arch: ModelArch, draft: BuildConfig | None, draft_arch: ModelArch | None,
             tp: int | None = None) -> list[tuple[BuildConfig, EngineMemory]]:
    engines = [(config, engine_memory(config, arch, tp))]
    if draft is not None:
        engines.append((draft, engine_memory(draft, draft_arch)))
    return engines


def _fit(config, arch, draft, draft_arch, gpu, seq_tokens, draft_seq_tokens, tp=None):
    engines = _engines(config, arch, draft, draft_arch, tp)
    pools = kv_pools(gpu, engines)
    conc = [concurrent_sequences(config, pools[0], seq_tokens)]
    if draft is not None:
        conc.append(concurrent_sequences(draft, pools[1], draft_seq_tokens))
    return engines, pools, min(conc)


def _decode_rate(gpu: GpuSpec, mem: EngineMemory, context: float, batch: int) -> float:
    """Aggregate tokens/s when every step reads all weights once and each sequence's KV."""
    bytes_per_step = (mem.weight_bytes - mem.embedding_bytes) + batch * mem.kv_bytes_per_token * context
    return batch * gpu.bandwidth_gb_s * 1e9 / bytes_per_step


def make_plan(config: BuildConfig, gpu: GpuSpec, *, input_len: int, output_len: int,
              request_rate: float | None = None, per_replica_throughput: float | None = None) -> Plan:
    e = config.engine
    if input_len > e.max_input_len or input_len + output_len > e.max_seq_len:
        raise ConfigError(f"input {input_len} + output {output_len} tokens exceed the engine limits "
                          f"(max_input_len {e.max_input_len}, max_seq_len {e.max_seq_len})",
                          where=f"{config.name}: engine", fix="plan a shorter workload or raise the engine limits")
    arch = arch_for(config)
    draft = load_draft(config)
    draft_arch = arch_for(draft) if draft else None
    draft_len = config.speculation.max_draft_len if config.speculation else 0
    seq_tokens, draft_seq_tokens = input_len + output_len + draft_len, input_len + output_len

    engines, pools, concurrency = _fit(config, arch, draft, draft_arch, gpu, seq_tokens, draft_seq_tokens)
    plan = Plan(config=config, draft=draft, gpu=gpu, arch=arch, draft_arch=draft_arch, input_len=input_len,
                output_len=output_len, target=engines[0][1], draft_memory=engines[1][1] if draft else None,
                pools=pools, concurrency=concurrency, fits=concurrency >= 1)
    if draft and any(c.engine.max_tokens_in_paged_kv_cache is None for c in (config, draft)):
        plan.warnings.append("two engines share each GPU and at least one has no "
                             "engine.max_tokens_in_paged_kv_cache: the KV split then depends on which loads "
                             "first (this plan assumes the target). Set it on both.")
    if config.quantization and config.quantization.format in ("fp8", "w4a8_awq") and not gpu.supports_fp8:
        plan.warnings.append(f"{gpu.name} (SM {gpu.sm}) has no FP8 support: this config cannot run there.")

    for tp in TP_CANDIDATES:
        if arch.num_kv_heads % tp:
            continue  # TensorRT-LLM needs the KV heads divisible by the TP size
        _, tp_pools, tp_conc = _fit(config, arch, draft, draft_arch, gpu, seq_tokens, draft_seq_tokens, tp)
        _, _, one_long = _fit(config, arch, draft, draft_arch, gpu, e.max_seq_len + draft_len, e.max_seq_len, tp)
        mem = engine_memory(config, arch, tp)
        plan.tp_table.append({"tp": tp, "weights_gib": mem.weight_bytes / GIB, "kv_tokens": tp_pools[0].tokens,
                              "concurrency": tp_conc, "fits": one_long >= 1})
        if one_long >= 1 and plan.smallest_tp is None:
            plan.smallest_tp = tp
        if tp_conc >= e.max_batch_size and plan.smallest_tp_full_batch is None:
            plan.smallest_tp_full_batch = tp

    context = input_len + output_len / 2
    plan.decode_tokens_per_s = _decode_rate(gpu, plan.target, context, 1)
    plan.decode_tokens_per_s_at_concurrency = _decode_rate(gpu, plan.target, context, max(concurrency, 1))

    bf16_bytes = arch.num_params * 2
    quantized_bytes = plan.target.weight_bytes * config.parallelism.tp
    # convert_checkpoint holds the HF model and the converted weights; quantize.py stages the HF model
    # through host memory while ModelOpt calibrates it on the GPUs (device_map auto).
    plan.host_ram_bytes = int(bf16_bytes + quantized_bytes)
    plan.calibration_gpu_bytes = int(bf16_bytes * 1.1) if config.quantization and \
        config.quantization.format in ("fp8", "int4_awq", "w4a8_awq", "int8_sq") else 0

    plan.request_rate = request_rate
    if per_replica_throughput is not None:
        plan.per_replica_rps, plan.per_replica_rps_measured = per_replica_throughput, True
    else:
        plan.per_replica_rps = plan.decode_tokens_per_s_at_concurrency / output_len
    if request_rate is not None and plan.per_replica_rps:
        plan.replicas = max(1, math.ceil(request_rate / (plan.per_replica_rps * UTILIZATION_TARGET)))
    return plan


@click.command("plan")
@click.argument("config_name", metavar="CONFIG")
@click.option("--gpu", "gpu_name", required=True, help="h100-sxm-80gb, h200-141gb, a100-80gb or l40s-48gb")
@click.option("--input-len", type=click.IntRange(min=1), help="prompt tokens [default: 2048, within the engine]")
@click.option("--output-len", type=click.IntRange(min=1), help="generated tokens [default: 512, within the engine]")
@click.option("--request-rate", type=click.FloatRange(min=0, min_open=True), help="target requests/s")
@click.option("--per-replica-throughput", type=click.FloatRange(min=0, min_open=True),
              help="measured requests/s of one replica (from trtpipe bench); default: bandwidth estimate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="write the four markdown documents and plan.json here")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config value")
def plan_command(config_name, gpu_name, input_len, output_len, request_rate, per_replica_throughput, out_dir,
                 overrides):
    """Memory, capacity and scaling plan for CONFIG on a GPU, before anything is built."""
    from trtpipe.plan_report import summary_text, write_documents

    config = load_config(config_name, list(overrides))
    e = config.engine
    input_len = input_len or min(2048, e.max_input_len, e.max_seq_len // 2)
    output_len = output_len or min(512, e.max_seq_len - input_len)
    plan = make_plan(config, get_gpu(gpu_name), input_len=input_len, output_len=output_len,
                     request_rate=request_rate,
                     per_replica_throughput=per_replica_throughput)
    click.echo(summary_text(plan))
    if out_dir is not None:
        for path in write_documents(plan, out_dir):
            click.echo(f"wrote {path}")
