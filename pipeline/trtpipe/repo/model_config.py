"""Triton ModelConfig messages for the reference engine, built as protobuf and written with text_format.

The `<model>-engine` model has the tensor interface of TensorRT-LLM's `tensorrt_llm` model (reference
facts §3c): the same names, types and shapes, decoupled, so a client cannot tell the two engines apart.
"""

from __future__ import annotations

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from trtpipe.spec import ServingSpec

T = mc.DataType
# (name, type, dims, optional). Scalars are dims [1] reshaped to [] as in tensorrtllm_backend's config.
ENGINE_INPUTS = [
    ("input_ids", T.TYPE_INT32, [-1], False),
    ("input_lengths", T.TYPE_INT32, [1], False),
    ("request_output_len", T.TYPE_INT32, [1], False),
    ("end_id", T.TYPE_INT32, [1], True),
    ("pad_id", T.TYPE_INT32, [1], True),
    ("streaming", T.TYPE_BOOL, [1], True),
    ("temperature", T.TYPE_FP32, [1], True),
    ("runtime_top_k", T.TYPE_INT32, [1], True),
    ("runtime_top_p", T.TYPE_FP32, [1], True),
    ("seed", T.TYPE_UINT64, [1], True),
    ("min_tokens", T.TYPE_INT32, [1], True),
    ("repetition_penalty", T.TYPE_FP32, [1], True),
    ("presence_penalty", T.TYPE_FP32, [1], True),
    ("frequency_penalty", T.TYPE_FP32, [1], True),
    ("stop_words_list", T.TYPE_INT32, [2, -1], True),
    ("return_log_probs", T.TYPE_BOOL, [1], True),
    ("return_num_input_tokens", T.TYPE_BOOL, [1], True),
    ("return_num_output_tokens", T.TYPE_BOOL, [1], True),
    ("exclude_input_in_output", T.TYPE_BOOL, [1], True),
    ("draft_input_ids", T.TYPE_INT32, [-1], True),
    ("draft_logits", T.TYPE_FP32, [-1, -1], True),
    ("stop", T.TYPE_BOOL, [1], True),
    ("guided_decoding_guide_type", T.TYPE_STRING, [1], True),
    ("guided_decoding_guide", T.TYPE_STRING, [1], True),
    # trtpipe's own (the reference engine only): the last N prompt tokens were generated under the guide (a
    # speculation round resends them), and top-k log-probs per generated token.
    ("guided_decoding_prefix_len", T.TYPE_INT32, [1], True),
    ("num_top_log_probs", T.TYPE_INT32, [1], True),
    ("return_prompt_log_probs", T.TYPE_BOOL, [1], True),
]
ENGINE_OUTPUTS = [
    ("output_ids", T.TYPE_INT32, [-1, -1]),
    ("sequence_length", T.TYPE_INT32, [-1]),
    ("output_log_probs", T.TYPE_FP32, [-1, -1]),
    ("cum_log_probs", T.TYPE_FP32, [-1]),
    ("num_input_tokens", T.TYPE_INT32, [1]),
    ("num_output_tokens", T.TYPE_INT32, [1]),
    ("total_accepted_draft_tokens", T.TYPE_INT32, [1]),
    ("total_draft_tokens", T.TYPE_INT32, [1]),
    ("kv_cache_alloc_new_blocks", T.TYPE_INT32, [1]),
    ("kv_cache_reused_blocks", T.TYPE_INT32, [1]),
    ("kv_cache_alloc_total_blocks", T.TYPE_INT32, [1]),
    # trtpipe's own: [len, k] ids and log-probs of the k most likely tokens at each generated position.
    ("output_top_token_ids", T.TYPE_INT32, [-1, -1]),
    ("output_top_log_probs", T.TYPE_FP32, [-1, -1]),
    # trtpipe's own, on the first response: log-probs of prompt tokens 1..n-1 and their top-k alternatives.
    ("prompt_log_probs", T.TYPE_FP32, [-1]),
    ("prompt_top_token_ids", T.TYPE_INT32, [-1, -1]),
    ("prompt_top_log_probs", T.TYPE_FP32, [-1, -1]),
]


def reference_engine_config(spec: ServingSpec, model_name: str, live_version: int) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=model_name, backend="python", max_batch_size=spec.max_batch_size)
    cfg.model_transaction_policy.decoupled = True
    cfg.version_policy.specific.versions.append(live_version)
    for name, dtype, dims, optional in ENGINE_INPUTS:
        tensor = cfg.input.add(name=name, data_type=dtype, dims=dims, optional=optional)
        if dims == [1]:
            tensor.reshape.SetInParent()  # reshape: { shape: [ ] }
    for name, dtype, dims in ENGINE_OUTPUTS:
        cfg.output.add(name=name, data_type=dtype, dims=dims)
    # One instance owns the engine: in-flight batching happens inside it, not across instances.
    cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    for key, value in {"engine_dir": "engine", "tokens_per_block": spec.tokens_per_block,
                       "batch_scheduler_policy": spec.batch_scheduler_policy,
                       "enable_kv_cache_reuse": spec.enable_kv_cache_reuse,
                       "max_tokens_in_paged_kv_cache": spec.max_tokens_in_paged_kv_cache or "",
                       "enable_chunked_context": spec.enable_chunked_context}.items():
        cfg.parameters[key].string_value = str(value).lower() if isinstance(value, bool) else str(value)
    return cfg


def to_pbtxt(cfg: mc.ModelConfig) -> str:
    return text_format.MessageToString(cfg)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
