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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from trtpipe.capacity import (DTYPE_BYTES, KNOWN_ARCHITECTURES, RUNTIME_OVERHEAD_BYTES, TP_CANDIDATES,  # noqa: F401
                              UTILIZATION_TARGET, EngineMemory, KvPool, ModelArch, arch_for, checkpoint_quant_for,
                              concurrent_sequences, engine_memory, kv_bytes_per_element, kv_pools,
                              linear_bytes_per_param)
from trtpipe.config import BuildConfig, load_config, load_draft
from trtpipe.errors import ConfigError
from trtpipe.hardware import GIB, GpuSpec, get_gpu

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
    checkpoint_quant: Any = None  # engine.checkpoint_quant.CheckpointQuant of a pre-quantized local checkpoint

    @property
    def world_size(self) -> int:
        return self.config.parallelism.world_size


def _engines(config: BuildConfig, arch: ModelArch, draft: BuildConfig | None, draft_arch: ModelArch | None,
             tp: int | None = None) -> list[tuple[BuildConfig, EngineMemory]]:
    target = engine_memory(config, arch, tp)
    if draft is None:
        return [(config, target)]
    draft_mem = engine_memory(draft, draft_arch)
    if _draft_in_engine(config):
        # The engine speculates itself (LLM API speculative_config): the draft's weights load into the target's
        # executor and every token of a sequence holds draft KV too, in the one pool that executor allocates.
        return [(config, replace(target, weight_bytes=target.weight_bytes + draft_mem.weight_bytes,
                                 kv_bytes_per_token=target.kv_bytes_per_token + draft_mem.kv_bytes_per_token))]
    return [(config, target), (draft, draft_mem)]


def _draft_in_engine(config: BuildConfig) -> bool:
    from trtpipe.backend_registry import get_backend

    return not get_backend(config.backend).draft_is_a_model


def _fit(config, arch, draft, draft_arch, gpu, seq_tokens, draft_seq_tokens, tp=None):
    engines = _engines(config, arch, draft, draft_arch, tp)
    pools = kv_pools(gpu, engines)
    conc = [concurrent_sequences(config, pools[0], seq_tokens)]
    if len(engines) > 1:
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
                output_len=output_len, target=engines[0][1], draft_memory=engines[1][1] if len(engines) > 1 else None,
                pools=pools, concurrency=concurrency, fits=concurrency >= 1,
                checkpoint_quant=checkpoint_quant_for(config))
    if len(engines) > 1 and any(c.engine.max_tokens_in_paged_kv_cache is None for c in (config, draft)):
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
    target_alone = engine_memory(config, arch)  # the ceiling is the target's, with or without a draft beside it
    plan.decode_tokens_per_s = _decode_rate(gpu, target_alone, context, 1)
    plan.decode_tokens_per_s_at_concurrency = _decode_rate(gpu, target_alone, context, max(concurrency, 1))

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
