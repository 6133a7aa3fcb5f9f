"""The Triton config.pbtxt files trtpipe would write for the tensorrtllm backend.

Configs are built as ModelConfig messages, printed with text_format and parsed back, which proves them
valid ModelConfig text. These tests check what we would write for Triton; they do not load the
tensorrtllm backend (that needs a GPU and the NGC image).
"""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from trtpipe.backend_registry import get_backend
from trtpipe.errors import ConfigError
from trtpipe.repo import tensorrtllm_tensors as T
from trtpipe.repo.tensorrtllm_configs import (DRAFT_PARAMETER, RepoNames, engine_model_config, model_set_configs,
                                       parse_pbtxt, to_pbtxt)
from trtpipe.spec import ServingSpec


@pytest.fixture
def spec(llama_8b) -> ServingSpec:
    return get_backend("trt-engine").serving_spec(llama_8b)  # what publish writes


@pytest.fixture
def draft_spec(draft_1b) -> ServingSpec:
    return get_backend("trt-engine").serving_spec(draft_1b)


@pytest.fixture
def repo(spec, tmp_path):
    return model_set_configs(spec, repo_dir=tmp_path / "models", live_version=3, gpu_device_ids=[0])


def _params(cfg: mc.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def test_engine_config_round_trips_through_text_format(spec, tmp_path):
    cfg = engine_model_config(spec, "llama-8b-engine", 3, engine_dir=tmp_path / "llama-8b-engine/3/engine")
    text = to_pbtxt(cfg)
    assert parse_pbtxt(text) == cfg
    assert "${" not in text  # nothing left as an unfilled template key


def test_engine_config_is_decoupled_inflight_batching_on_the_tensorrtllm_backend(spec, tmp_path):
    engine_dir = tmp_path / "llama-8b-engine" / "3" / "engine"
    cfg = parse_pbtxt(to_pbtxt(engine_model_config(spec, "llama-8b-engine", 3, engine_dir=engine_dir)))
    assert cfg.name == "llama-8b-engine" and cfg.backend == "tensorrtllm"
    assert cfg.max_batch_size == 64
    assert cfg.model_transaction_policy.decoupled is True
    assert list(cfg.version_policy.specific.versions) == [3]
    assert list(cfg.dynamic_batching.preferred_batch_size) == [64]
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 0
    assert cfg.dynamic_batching.default_queue_policy.max_queue_size == 0
    assert [(g.count, g.kind) for g in cfg.instance_group] == [(1, mc.ModelInstanceGroup.KIND_CPU)]
    assert _params(cfg) == {
        "gpt_model_type": "inflight_fused_batching",
        "gpt_model_path": str(engine_dir),
        "max_beam_width": "1",
        "batch_scheduler_policy": "guaranteed_no_evict",
        "kv_cache_free_gpu_mem_fraction": "0.9",
        "enable_kv_cache_reuse": "true",
        "enable_chunked_context": "true",
        "exclude_input_in_output": "true",
        "max_tokens_in_paged_kv_cache": "524288",
        "executor_worker_path": "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker",
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        # Read without a try by getGuidedDecodingConfigFromParams(): absent, the model fails to load. Guided
        # decoding on (serving.guided_decoding: xgrammar): the tokenizer info the build wrote beside the engine.
        "tokenizer_dir": "",
        "guided_decoding_backend": "xgrammar",
        "xgrammar_tokenizer_info_path": str(engine_dir / "xgrammar_tokenizer_info.json"),
        # The draft's engine model, for launch and the frontend; the C++ backend does not read it.
        DRAFT_PARAMETER: "llama-3.2-1b-draft-engine",
    }


def test_guided_decoding_off_writes_the_three_guided_keys_empty(llama_8b, tmp_path):
    config = llama_8b.model_copy(update={"serving": llama_8b.serving.model_copy(update={"guided_decoding": "none"})})
    spec = get_backend("trt-engine").serving_spec(config)
    params = _params(engine_model_config(spec, engine_dir=tmp_path / "e"))
    assert spec.guided_decoding is None
    # Present but empty: the backend then builds no guided decoder (and refuses no load for want of the keys).
    assert {k: params[k] for k in ("tokenizer_dir", "guided_decoding_backend", "xgrammar_tokenizer_info_path")} == \
        {"tokenizer_dir": "", "guided_decoding_backend": "", "xgrammar_tokenizer_info_path": ""}


def test_engine_config_values_follow_the_build_config(tmp_path):
    from trtpipe.config import load_config

    cfg = load_config("llama-70b", ["serving.batch_scheduler_policy=max_utilization",
                                    "serving.kv_cache_free_gpu_mem_fraction=0.85",
                                    "serving.enable_kv_cache_reuse=false", "serving.max_queue_size=100",
                                    "serving.max_queue_delay_microseconds=50"])
    msg = engine_model_config(ServingSpec.from_config(cfg), engine_dir=tmp_path / "e")
    params = _params(msg)
    assert msg.name == "llama-70b-engine" and msg.max_batch_size == 128
    assert params["batch_scheduler_policy"] == "max_utilization"
    assert params["kv_cache_free_gpu_mem_fraction"] == "0.85"
    assert params["enable_kv_cache_reuse"] == "false"  # written explicitly: the C++ default is true
    assert "max_tokens_in_paged_kv_cache" not in params  # unset: the memory fraction decides
    assert msg.dynamic_batching.default_queue_policy.max_queue_size == 100
    assert msg.dynamic_batching.max_queue_delay_microseconds == 50


def test_engine_declares_the_tensorrt_llm_tensor_interface_with_template_types_filled(spec, tmp_path):
    cfg = engine_model_config(spec, engine_dir=tmp_path / "e")
    inputs = {t.name: t for t in cfg.input}
    outputs = {t.name: t for t in cfg.output}
    assert [t.name for t in cfg.input] == [row[0] for row in T.ENGINE_INPUTS]
    assert len(outputs) == len(cfg.output)  # no duplicate names
    # Required, not optional: input_lengths and request_output_len, scalars reshaped to [].
    for name in ("input_lengths", "request_output_len"):
        assert not inputs[name].optional and list(inputs[name].dims) == [1]
        assert inputs[name].HasField("reshape") and list(inputs[name].reshape.shape) == []
    assert inputs["input_ids"].allow_ragged_batch and list(inputs["input_ids"].dims) == [-1]
    assert list(inputs["stop_words_list"].dims) == [2, -1]
    assert inputs["streaming"].data_type == mc.TYPE_BOOL and inputs["seed"].data_type == mc.TYPE_UINT64
    # Template keys: logits_datatype, encoder_input_features_data_type, prompt_embedding_table_data_type.
    assert inputs["draft_logits"].data_type == mc.TYPE_FP32
    assert outputs["generation_logits"].data_type == mc.TYPE_FP32
    assert inputs["encoder_input_features"].data_type == mc.TYPE_FP16
    assert inputs["prompt_embedding_table"].data_type == mc.TYPE_FP16
    for name in ("draft_input_ids", "stop", "end_id", "pad_id", "runtime_top_k", "runtime_top_p", "temperature",
                 "return_log_probs", "return_num_output_tokens", "exclude_input_in_output"):
        assert inputs[name].optional, name
    for name in ("output_ids", "sequence_length", "output_log_probs", "num_output_tokens",
                 "total_accepted_draft_tokens", "kv_cache_reused_blocks"):
        assert name in outputs
    assert list(outputs["output_ids"].dims) == [-1, -1]


def test_engine_dir_must_be_given_and_absolute(spec):
    with pytest.raises(ConfigError, match="no engine directory"):
        engine_model_config(spec, "llama-8b-engine", 1)
    with pytest.raises(ConfigError, match="relative"):
        engine_model_config(spec, "llama-8b-engine", 1, engine_dir="llama-8b-engine/1/engine")


def test_model_set_is_the_engine_and_the_text_ensemble_all_pinned_to_one_version(repo, tmp_path):
    # Written in this order: the engine last, since its config names the version the frontend serves.
    assert list(repo) == ["llama-8b-preprocessing", "llama-8b-postprocessing", "llama-8b-ensemble",
                          "llama-8b-engine"]
    for name, cfg in repo.items():
        assert cfg.name == name
        assert parse_pbtxt(to_pbtxt(cfg)) == cfg
        assert list(cfg.version_policy.specific.versions) == [3], name
    engine = repo["llama-8b-engine"]
    models = (tmp_path / "models").resolve()
    assert _params(engine)["gpt_model_path"] == str(models / "llama-8b-engine" / "3" / "engine")
    assert _params(engine)["gpu_device_ids"] == "0"
    assert _params(engine)[DRAFT_PARAMETER] == "llama-3.2-1b-draft-engine"


def test_a_draft_is_a_plain_engine_that_names_no_draft(draft_spec, tmp_path):
    cfg = engine_model_config(draft_spec, engine_dir=tmp_path / "e")
    assert cfg.name == "llama-3.2-1b-draft-engine" and DRAFT_PARAMETER not in _params(cfg)
    assert _params(cfg)["max_tokens_in_paged_kv_cache"] == "524288"
    assert cfg.model_transaction_policy.decoupled


def test_pre_and_postprocessing_carry_what_the_upstream_python_models_read(repo, tmp_path):
    models = (tmp_path / "models").resolve()
    pre, post = repo["llama-8b-preprocessing"], repo["llama-8b-postprocessing"]
    assert pre.backend == "python" and post.backend == "python"
    # preprocessing/1/model.py indexes these parameters and looks up these outputs' types in initialize().
    # Each reads the tokenizer copied into its own version directory.
    assert _params(pre) == {"tokenizer_dir": str(models / "llama-8b-preprocessing" / "3" / "tokenizer"),
                            "add_special_tokens": "true", "multimodal_model_path": ""}
    pre_outputs = {t.name for t in pre.output}
    assert {"INPUT_ID", "DECODER_INPUT_ID", "REQUEST_INPUT_LEN", "REQUEST_DECODER_INPUT_LEN", "BAD_WORDS_IDS",
            "STOP_WORDS_IDS", "OUT_END_ID", "OUT_PAD_ID", "OUT_PROMPT_TABLE_EXTRA_IDS", "PIXEL_VALUES",
            "IMAGE_SIZES", "EMBEDDING_BIAS", "REQUEST_OUTPUT_LEN"} <= pre_outputs
    assert {"EMBEDDING_BIAS_WORDS", "EMBEDDING_BIAS_WEIGHTS"} <= {t.name for t in pre.input}
    assert _params(post) == {"tokenizer_dir": str(models / "llama-8b-postprocessing" / "3" / "tokenizer"),
                             "skip_special_tokens": "true"}
    # The preprocessing template's multimodal tensors are declared too, as upstream declares them.
    assert {"IMAGE_URL", "IMAGE_BYTES", "VIDEO_BYTES", "IMAGES"} <= {t.name for t in pre.input}
    assert {"IS_VIDEO_INPUT", "ATTENTION_MASK", "IMAGE_GRID_THW", "VISION_INPUT_ID"} <= pre_outputs
    assert [t.name for t in post.output] == ["OUTPUT"]


def test_ensemble_wiring_is_closed(repo):
    """Every step input names a tensor of that step's model and is fed by an ensemble input or an earlier
    step's output; every ensemble output is produced; every ensemble input is consumed."""
    ens = repo["llama-8b-ensemble"]
    assert ens.platform == "ensemble" and ens.max_batch_size == 64
    available = {t.name for t in ens.input}
    consumed: set[str] = set()
    for step in ens.ensemble_scheduling.step:
        model = repo[step.model_name]
        model_inputs, model_outputs = {t.name for t in model.input}, {t.name for t in model.output}
        for key, value in step.input_map.items():
            assert key in model_inputs, (step.model_name, key)
            assert value in available, (step.model_name, value)
            consumed.add(value)
        for key, value in step.output_map.items():
            assert key in model_outputs, (step.model_name, key)
            available.add(value)
    assert {t.name for t in ens.output} <= available
    assert {t.name for t in ens.input} <= consumed
    engine_step = next(s for s in ens.ensemble_scheduling.step if s.model_name == "llama-8b-engine")
    assert engine_step.input_map["streaming"] == "stream"
    assert engine_step.input_map["runtime_top_k"] == "top_k"


def test_repo_names_are_one_place():
    names = RepoNames("llama-70b")
    assert (names.engine, names.preprocessing, names.postprocessing, names.ensemble) == (
        "llama-70b-engine", "llama-70b-preprocessing", "llama-70b-postprocessing", "llama-70b-ensemble")
