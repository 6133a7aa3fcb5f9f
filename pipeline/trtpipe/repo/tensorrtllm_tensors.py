"""The tensor interfaces of the TensorRT-LLM backend's models, as data.

Transcribed (names, types, shapes, optionality) from the inflight_batcher_llm templates that TensorRT-LLM
1.2.x ships (triton_backend/all_models/inflight_batcher_llm/*/config.pbtxt; reference/trtllm-facts.md
§3c). Upstream deletes those templates after 1.3.0rc20, so trtpipe owns this table.

A row is (name, data type, dims, flags). Flags: "opt" optional input, "scalar" dims [1] reshaped to []
(the C++ backend reads scalars per request), "ragged" allow_ragged_batch. A data type written as a
template key ("logits", "encoder_features", "prompt_table") is filled from the model's config.
"""

from __future__ import annotations

S, R, O = "scalar", "ragged", "opt"

# The `tensorrt_llm` model (C++ backend `tensorrtllm`): every input the template declares, so a client
# of the real template works against ours unchanged.
ENGINE_INPUTS = [
    ("input_ids", "TYPE_INT32", [-1], {O, R}),
    ("encoder_input_features", "encoder_features", [-1, -1], {O, R}),
    ("encoder_output_lengths", "TYPE_INT32", [1], {O, S}),
    ("input_lengths", "TYPE_INT32", [1], {S}),
    ("request_output_len", "TYPE_INT32", [1], {S}),
    ("num_return_sequences", "TYPE_INT32", [1], {O, S}),
    ("draft_input_ids", "TYPE_INT32", [-1], {O, R}),
    ("decoder_input_ids", "TYPE_INT32", [-1], {O, R}),
    ("decoder_input_lengths", "TYPE_INT32", [1], {O, S}),
    ("draft_logits", "logits", [-1, -1], {O, R}),
    ("draft_acceptance_threshold", "TYPE_FP32", [1], {O, S}),
    ("end_id", "TYPE_INT32", [1], {O, S}),
    ("pad_id", "TYPE_INT32", [1], {O, S}),
    ("stop_words_list", "TYPE_INT32", [2, -1], {O, R}),
    ("bad_words_list", "TYPE_INT32", [2, -1], {O, R}),
    ("embedding_bias", "TYPE_FP32", [-1], {O, R}),
    ("beam_width", "TYPE_INT32", [1], {O, S}),
    ("temperature", "TYPE_FP32", [1], {O, S}),
    ("runtime_top_k", "TYPE_INT32", [1], {O, S}),
    ("runtime_top_p", "TYPE_FP32", [1], {O, S}),
    ("runtime_top_p_min", "TYPE_FP32", [1], {O, S}),
    ("runtime_top_p_decay", "TYPE_FP32", [1], {O, S}),
    ("runtime_top_p_reset_ids", "TYPE_INT32", [1], {O, S}),
    ("len_penalty", "TYPE_FP32", [1], {O, S}),
    ("early_stopping", "TYPE_BOOL", [1], {O, S}),
    ("repetition_penalty", "TYPE_FP32", [1], {O, S}),
    ("min_tokens", "TYPE_INT32", [1], {O, S}),
    ("beam_search_diversity_rate", "TYPE_FP32", [1], {O, S}),
    ("presence_penalty", "TYPE_FP32", [1], {O, S}),
    ("frequency_penalty", "TYPE_FP32", [1], {O, S}),
    ("seed", "TYPE_UINT64", [1], {O, S}),
    ("return_log_probs", "TYPE_BOOL", [1], {O, S}),
    ("return_context_logits", "TYPE_BOOL", [1], {O, S}),
    ("return_generation_logits", "TYPE_BOOL", [1], {O, S}),
    ("return_perf_metrics", "TYPE_BOOL", [1], {O, S}),
    ("return_num_input_tokens", "TYPE_BOOL", [1], {O, S}),
    ("return_num_output_tokens", "TYPE_BOOL", [1], {O, S}),
    ("exclude_input_in_output", "TYPE_BOOL", [1], {O, S}),
    ("stop", "TYPE_BOOL", [1], {O, S}),
    ("streaming", "TYPE_BOOL", [1], {O, S}),
    ("prompt_embedding_table", "prompt_table", [-1, -1], {O, R}),
    ("prompt_table_extra_ids", "TYPE_UINT64", [-1], {O, R}),
    ("prompt_vocab_size", "TYPE_INT32", [1], {O, S}),
    ("cross_attention_mask", "TYPE_BOOL", [-1, -1], {O, R}),
    ("mrope_rotary_cos_sin", "TYPE_FP32", [-1], {O}),
    ("mrope_position_deltas", "TYPE_INT64", [1], {O}),
    ("lora_task_id", "TYPE_UINT64", [1], {O, S}),
    ("lora_weights", "TYPE_FP16", [-1, -1], {O, R}),
    ("lora_config", "TYPE_INT32", [-1, 3], {O, R}),
    ("context_phase_params", "TYPE_UINT8", [-1], {O, R}),
    ("skip_cross_attn_blocks", "TYPE_BOOL", [1], {O, R}),
    ("retention_token_range_starts", "TYPE_INT32", [-1], {O, R}),
    ("retention_token_range_ends", "TYPE_INT32", [-1], {O, R}),
    ("retention_token_range_priorities", "TYPE_INT32", [-1], {O, R}),
    ("retention_token_range_durations_ms", "TYPE_INT32", [-1], {O, R}),
    ("retention_decode_priority", "TYPE_INT32", [1], {O, R}),
    ("retention_decode_duration_ms", "TYPE_INT32", [1], {O, R}),
    ("guided_decoding_guide_type", "TYPE_STRING", [1], {O, R}),
    ("guided_decoding_guide", "TYPE_STRING", [1], {O, R}),
    ("lookahead_window_size", "TYPE_INT32", [1], {O, R}),
    ("lookahead_ngram_size", "TYPE_INT32", [1], {O, R}),
    ("lookahead_verification_set_size", "TYPE_INT32", [1], {O, R}),
]
ENGINE_OUTPUTS = [
    ("output_ids", "TYPE_INT32", [-1, -1], set()),
    ("sequence_length", "TYPE_INT32", [-1], set()),
    ("cum_log_probs", "TYPE_FP32", [-1], set()),
    ("output_log_probs", "TYPE_FP32", [-1, -1], set()),
    ("context_logits", "logits", [-1, -1], set()),
    ("generation_logits", "logits", [-1, -1, -1], set()),
    ("batch_index", "TYPE_INT32", [1], set()),
    ("sequence_index", "TYPE_INT32", [1], set()),
    ("context_phase_params", "TYPE_UINT8", [-1], set()),
    ("kv_cache_alloc_new_blocks", "TYPE_INT32", [1], set()),
    ("kv_cache_reused_blocks", "TYPE_INT32", [1], set()),
    # NOTE: the upstream ensemble template lists kv_cache_alloc_total_blocks twice; once is enough.
    ("kv_cache_alloc_total_blocks", "TYPE_INT32", [1], set()),
    ("arrival_time_ns", "TYPE_INT64", [1], set()),
    ("first_scheduled_time_ns", "TYPE_INT64", [1], set()),
    ("first_token_time_ns", "TYPE_INT64", [1], set()),
    ("last_token_time_ns", "TYPE_INT64", [1], set()),
    ("acceptance_rate", "TYPE_FP32", [1], set()),
    ("total_accepted_draft_tokens", "TYPE_INT32", [1], set()),
    ("total_draft_tokens", "TYPE_INT32", [1], set()),
    ("num_input_tokens", "TYPE_INT32", [1], set()),
    ("num_output_tokens", "TYPE_INT32", [1], set()),
]

# preprocessing (Python backend, the image's /app/all_models/inflight_batcher_llm/preprocessing/1/model.py).
# Its initialize() looks up the data type of the text outputs (and of EMBEDDING_BIAS_*), so none may be
# left out even for a text-only model. The multimodal tensors are declared as the template declares them
# (a declared output the model never produces costs nothing), so whichever 1.2.x model.py the image
# ships finds every tensor it asks for.
PRE_INPUTS = [
    ("QUERY", "TYPE_STRING", [1], set()),
    ("DECODER_QUERY", "TYPE_STRING", [1], {O}),
    ("IMAGE_BYTES", "TYPE_UINT8", [-1, -1, -1, -1], {O}),
    ("IMAGE_URL", "TYPE_STRING", [1], {O}),
    ("IMAGES", "TYPE_STRING", [-1], {O}),
    ("VIDEO_BYTES", "TYPE_UINT8", [-1, -1, -1, -1], {O}),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", [1], set()),
    ("BAD_WORDS_DICT", "TYPE_STRING", [-1], {O}),
    ("STOP_WORDS_DICT", "TYPE_STRING", [-1], {O}),
    ("EMBEDDING_BIAS_WORDS", "TYPE_STRING", [-1], {O}),
    ("EMBEDDING_BIAS_WEIGHTS", "TYPE_FP32", [-1], {O}),
    ("END_ID", "TYPE_INT32", [1], {O}),
    ("PAD_ID", "TYPE_INT32", [1], {O}),
    ("PROMPT_TABLE_EXTRA_ID", "TYPE_UINT64", [1], {O}),
]
PRE_OUTPUTS = [
    ("INPUT_ID", "TYPE_INT32", [-1], set()),
    ("REQUEST_INPUT_LEN", "TYPE_INT32", [1], set()),
    ("DECODER_INPUT_ID", "TYPE_INT32", [-1], set()),
    ("REQUEST_DECODER_INPUT_LEN", "TYPE_INT32", [1], set()),
    ("BAD_WORDS_IDS", "TYPE_INT32", [2, -1], set()),
    ("STOP_WORDS_IDS", "TYPE_INT32", [2, -1], set()),
    ("EMBEDDING_BIAS", "TYPE_FP32", [-1], set()),
    ("REQUEST_OUTPUT_LEN", "TYPE_INT32", [-1], set()),
    ("OUT_END_ID", "TYPE_INT32", [1], set()),
    ("OUT_PAD_ID", "TYPE_INT32", [1], set()),
    ("OUT_PROMPT_TABLE_EXTRA_IDS", "TYPE_UINT64", [-1], set()),
    ("PIXEL_VALUES", "TYPE_FP16", [-1, -1, -1, -1], set()),
    ("ASPECT_RATIO_IDS", "TYPE_INT64", [-1], set()),
    ("ASPECT_RATIO_MASK", "TYPE_INT64", [-1, -1], set()),
    ("CROSS_ATTENTION_MASK", "TYPE_INT64", [-1, -1, -1], set()),
    ("IMAGE_SIZES", "TYPE_INT64", [-1, 2], set()),
    ("IS_VIDEO_INPUT", "TYPE_BOOL", [1], set()),
    ("ATTENTION_MASK", "TYPE_INT64", [-1], set()),
    ("IMAGE_GRID_THW", "TYPE_INT64", [3], set()),
    ("VISION_INPUT_ID", "TYPE_INT32", [-1], set()),
]

POST_INPUTS = [
    ("TOKENS_BATCH", "TYPE_INT32", [-1, -1], set()),
    ("SEQUENCE_LENGTH", "TYPE_INT32", [-1], set()),
]
POST_OUTPUTS = [("OUTPUT", "TYPE_STRING", [-1], set())]

# The ensemble (text in, text out) for KServe clients. trtpipe's own frontend calls <model>-engine.
# Each row: ensemble tensor, data type, dims, flags, (step, that step's tensor).
ENSEMBLE_INPUTS = [
    ("text_input", "TYPE_STRING", [1], set(), ("pre", "QUERY")),
    ("max_tokens", "TYPE_INT32", [1], set(), ("pre", "REQUEST_OUTPUT_LEN")),
    ("bad_words", "TYPE_STRING", [-1], {O}, ("pre", "BAD_WORDS_DICT")),
    ("stop_words", "TYPE_STRING", [-1], {O}, ("pre", "STOP_WORDS_DICT")),
    ("end_id", "TYPE_INT32", [1], {O}, ("pre", "END_ID")),
    ("pad_id", "TYPE_INT32", [1], {O}, ("pre", "PAD_ID")),
    ("embedding_bias_words", "TYPE_STRING", [-1], {O}, ("pre", "EMBEDDING_BIAS_WORDS")),
    ("embedding_bias_weights", "TYPE_FP32", [-1], {O}, ("pre", "EMBEDDING_BIAS_WEIGHTS")),
    ("exclude_input_in_output", "TYPE_BOOL", [1], {O}, ("engine", "exclude_input_in_output")),
    ("top_k", "TYPE_INT32", [1], {O}, ("engine", "runtime_top_k")),
    ("top_p", "TYPE_FP32", [1], {O}, ("engine", "runtime_top_p")),
    ("temperature", "TYPE_FP32", [1], {O}, ("engine", "temperature")),
    ("length_penalty", "TYPE_FP32", [1], {O}, ("engine", "len_penalty")),
    ("repetition_penalty", "TYPE_FP32", [1], {O}, ("engine", "repetition_penalty")),
    ("min_tokens", "TYPE_INT32", [1], {O}, ("engine", "min_tokens")),
    ("presence_penalty", "TYPE_FP32", [1], {O}, ("engine", "presence_penalty")),
    ("frequency_penalty", "TYPE_FP32", [1], {O}, ("engine", "frequency_penalty")),
    ("seed", "TYPE_UINT64", [1], {O}, ("engine", "seed")),
    ("return_log_probs", "TYPE_BOOL", [1], {O}, ("engine", "return_log_probs")),
    ("return_num_input_tokens", "TYPE_BOOL", [1], {O}, ("engine", "return_num_input_tokens")),
    ("return_num_output_tokens", "TYPE_BOOL", [1], {O}, ("engine", "return_num_output_tokens")),
    ("beam_width", "TYPE_INT32", [1], {O}, ("engine", "beam_width")),
    ("stream", "TYPE_BOOL", [1], {O}, ("engine", "streaming")),
]
# preprocessing outputs -> engine inputs, through internal ensemble tensors.
ENSEMBLE_PRE_TO_ENGINE = [
    ("INPUT_ID", "_INPUT_ID", "input_ids"),
    ("REQUEST_INPUT_LEN", "_REQUEST_INPUT_LEN", "input_lengths"),
    ("REQUEST_OUTPUT_LEN", "_REQUEST_OUTPUT_LEN", "request_output_len"),
    ("STOP_WORDS_IDS", "_STOP_WORDS_IDS", "stop_words_list"),
    ("BAD_WORDS_IDS", "_BAD_WORDS_IDS", "bad_words_list"),
    ("EMBEDDING_BIAS", "_EMBEDDING_BIAS", "embedding_bias"),
    ("OUT_END_ID", "_PREPROCESSOR_END_ID", "end_id"),
    ("OUT_PAD_ID", "_PREPROCESSOR_PAD_ID", "pad_id"),
]
ENSEMBLE_OUTPUTS = [
    ("text_output", "TYPE_STRING", [-1], set(), ("post", "OUTPUT")),
    ("cum_log_probs", "TYPE_FP32", [-1], set(), ("engine", "cum_log_probs")),
    ("output_log_probs", "TYPE_FP32", [-1, -1], set(), ("engine", "output_log_probs")),
    ("batch_index", "TYPE_INT32", [1], set(), ("engine", "batch_index")),
    ("sequence_index", "TYPE_INT32", [1], set(), ("engine", "sequence_index")),
    ("num_input_tokens", "TYPE_INT32", [1], set(), ("engine", "num_input_tokens")),
    ("num_output_tokens", "TYPE_INT32", [1], set(), ("engine", "num_output_tokens")),
]
