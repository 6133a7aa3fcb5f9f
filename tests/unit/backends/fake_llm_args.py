"""The strict half of the tensorrt_llm stand-in: which names TensorRT-LLM's LLM API declares, per 1.x version, and
its YAML loader. Written from the sources, not from trtpipe's own table (trtpipe/trt/llm_api_dialects.py), so the
two can disagree and a test then fails:

- 1.1.x (the pinned image's 1.1.0), from tensorrt_llm/llmapi/llm_args.py (NVIDIA/TensorRT-LLM @fcd3f316, a
  1.0-era tree): DecodingBaseConfig.from_dict maps "MTP", "Medusa", "Eagle", "Lookahead", "NGram", "DraftTarget",
  "UserProvided", "AUTO"; the draft path is `speculative_model_dir`; EagleDecodingConfig has `eagle3_one_model`;
  KvCacheConfig has no `tokens_per_block`.
- 1.3.x, from nvidia.github.io/TensorRT-LLM/1.3.0rc27/llm-api/reference: Eagle3DecodingConfig
  (`decoding_type: Literal['Eagle3']`, `speculative_model`), KvCacheConfig with `tokens_per_block`.

`update_llm_args_with_extra_dict(llm_args, llm_args_dict, path)` does what the real one does with the keys trtpipe
writes: `speculative_config` through from_dict (dispatch on decoding_type, which is removed), the rest merged.
This is not TensorRT-LLM; it only refuses what the real classes would refuse for those names.
"""

from __future__ import annotations

import re
from typing import Any

TORCH_LLM_ARGS = {
    "model", "tokenizer", "tokenizer_mode", "skip_tokenizer_init", "trust_remote_code", "tensor_parallel_size",
    "dtype", "revision", "tokenizer_revision", "pipeline_parallel_size", "context_parallel_size", "gpus_per_node",
    "moe_cluster_parallel_size", "moe_tensor_parallel_size", "moe_expert_parallel_size", "enable_attention_dp",
    "cp_config", "load_format", "enable_lora", "lora_config", "kv_cache_config", "enable_chunked_prefill",
    "guided_decoding_backend", "batched_logits_processor", "iter_stats_max_iterations",
    "request_stats_max_iterations", "peft_cache_config", "scheduler_config", "cache_transceiver_config",
    "speculative_config", "max_batch_size", "max_input_len", "max_seq_len", "max_beam_width", "max_num_tokens",
    "gather_generation_logits", "num_postprocess_workers", "postprocess_tokenizer_dir", "reasoning_parser",
    "garbage_collection_gen0_threshold", "cuda_graph_config", "disable_overlap_scheduler", "moe_config",
    "attn_backend", "enable_iter_perf_stats", "enable_iter_req_stats", "print_iter_log", "torch_compile_config",
    "enable_autotuner", "stream_interval", "checkpoint_format",
}
KV_CACHE_CONFIG = {
    "1.1": {"enable_block_reuse", "max_tokens", "max_attention_window", "sink_token_length",
            "free_gpu_memory_fraction", "host_cache_size", "onboard_blocks", "cross_kv_cache_fraction",
            "secondary_offload_min_priority", "event_buffer_max_size", "enable_partial_reuse",
            "copy_on_partial_reuse", "use_uvm", "dtype"},
}
KV_CACHE_CONFIG["1.3"] = KV_CACHE_CONFIG["1.1"] | {"tokens_per_block", "max_gpu_total_bytes"}
NESTED = {"scheduler_config": {"capacity_scheduler_policy", "context_chunking_policy", "dynamic_batch_config"},
          "cuda_graph_config": {"batch_sizes", "max_batch_size", "enable_padding"}}

# decoding_type -> the fields its config class declares, per version.
_BASE = {"1.1": {"max_draft_len", "speculative_model_dir"}, "1.3": {"max_draft_len", "max_total_draft_tokens",
                                                                   "speculative_model"}}
_NGRAM = {"max_matching_ngram_size", "is_keep_all", "is_use_oldest", "is_public_pool"}
_EAGLE = {"eagle_choices", "use_dynamic_tree", "dynamic_tree_max_topK", "num_eagle_layers", "max_non_leaves_per_layer"}
DECODING_CONFIGS = {
    "1.1": {"Eagle": _BASE["1.1"] | _EAGLE | {"greedy_sampling", "posterior_threshold", "eagle3_one_model"},
            "DraftTarget": _BASE["1.1"], "NGram": _BASE["1.1"] | _NGRAM},
    "1.3": {"Eagle3": _BASE["1.3"] | _EAGLE | {"eagle3_layers_to_capture", "eagle3_model_arch"},
            "Draft_Target": _BASE["1.3"], "NGram": _BASE["1.3"] | _NGRAM},
}

# tensorrt_llm/sampling_params.py SamplingParams (a dataclass: an unknown keyword is a TypeError).
SAMPLING_PARAMS_FIELDS = {
    "end_id", "pad_id", "max_tokens", "bad", "bad_token_ids", "stop", "stop_token_ids", "include_stop_str_in_output",
    "embedding_bias", "logits_processor", "apply_batched_logits_processor", "n", "best_of", "use_beam_search",
    "top_k", "top_p", "top_p_min", "top_p_reset_ids", "top_p_decay", "seed", "temperature", "min_tokens",
    "beam_search_diversity_rate", "repetition_penalty", "presence_penalty", "frequency_penalty", "length_penalty",
    "early_stopping", "no_repeat_ngram_size", "min_p", "logprobs", "prompt_logprobs", "return_context_logits",
    "return_generation_logits", "exclude_input_from_output", "return_encoder_output", "return_perf_metrics",
    "additional_model_outputs", "lookahead_config", "guided_decoding", "ignore_eos", "detokenize",
    "add_special_tokens", "truncate_prompt_tokens", "skip_special_tokens", "spaces_between_special_tokens",
}


class ValidationError(ValueError):
    """Stands for pydantic's ValidationError / the dataclass TypeError: a name the class does not declare."""


def dialect(version: str) -> str:
    major_minor = tuple(int(x) for x in re.findall(r"\d+", version)[:2])
    if major_minor < (1, 1):
        raise ValidationError(f"the stand-in knows TensorRT-LLM >= 1.1, not {version}")
    return "1.1" if major_minor < (1, 3) else "1.3"


def check_fields(cls: str, given: dict[str, Any], declared: set[str]) -> None:
    extra = sorted(set(given) - declared)
    if extra:
        raise ValidationError(f"{cls}: extra fields not permitted: {', '.join(extra)}")


class DecodingConfig:
    """What DecodingBaseConfig.from_dict returns: a config object of the class `decoding_type` names."""

    def __init__(self, decoding_type: str, fields: dict[str, Any], version: str):
        self.decoding_type, self.fields, self.version = decoding_type, dict(fields), version

    def __eq__(self, other):
        return isinstance(other, DecodingConfig) and (self.decoding_type, self.fields) == \
            (other.decoding_type, other.fields)

    def __repr__(self):
        return f"DecodingConfig({self.decoding_type!r}, {self.fields!r})"


def decoding_config_from_dict(data: dict[str, Any], version: str) -> DecodingConfig:
    table = DECODING_CONFIGS[dialect(version)]
    data = dict(data)
    decoding_type = data.pop("decoding_type", None)
    if decoding_type not in table:
        raise ValidationError(f"Invalid decoding type: {decoding_type} (TensorRT-LLM {version} knows "
                              f"{', '.join(sorted(table))})")
    check_fields(f"{decoding_type}DecodingConfig", data, table[decoding_type])
    return DecodingConfig(decoding_type, data, version)


def check_llm_kwargs(kwargs: dict[str, Any], version: str) -> None:
    """What TorchLlmArgs(**kwargs) would refuse for the names trtpipe uses."""
    check_fields("TorchLlmArgs", kwargs, TORCH_LLM_ARGS)
    nested = {"kv_cache_config": KV_CACHE_CONFIG[dialect(version)], **NESTED}
    for key, declared in nested.items():
        if isinstance(kwargs.get(key), dict):
            check_fields(key, kwargs[key], declared)
    spec = kwargs.get("speculative_config")
    if spec is not None and not isinstance(spec, DecodingConfig):
        raise ValidationError(f"speculative_config: expected a DecodingConfig object, got {type(spec).__name__} "
                              f"(a dict becomes one only through update_llm_args_with_extra_dict)")
    if isinstance(spec, DecodingConfig) and spec.version != version:
        raise ValidationError(f"speculative_config was made by TensorRT-LLM {spec.version}, not {version}")


def update_llm_args_with_extra_dict(llm_args: dict, llm_args_dict: dict, extra_llm_api_options: str | None,
                                    version: str) -> dict:
    llm_args_dict = dict(llm_args_dict)
    if "speculative_config" in llm_args_dict and llm_args_dict["speculative_config"] is not None:
        llm_args_dict["speculative_config"] = decoding_config_from_dict(llm_args_dict["speculative_config"], version)
    return llm_args | llm_args_dict


class TorchLlmArgs:
    """tensorrt_llm.llmapi.llm_args.TorchLlmArgs: validates like LLM(**kwargs) does, loads nothing."""

    def __init__(self, version: str, **kwargs):
        if "model" not in kwargs:
            raise ValidationError("TorchLlmArgs: field required: model")
        check_llm_kwargs(kwargs, version)
        self.kwargs = kwargs
