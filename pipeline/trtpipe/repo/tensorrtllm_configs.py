"""Triton model configs for the trt-engine path, built as `ModelConfig` protobuf messages.

Upstream fills text templates with string substitution (tools/fill_template.py), which leaves any key
it was not given as a literal `${key}`; the C++ backend then silently treats it as unset. Here every
field is set from the ServingSpec, so nothing can be left unfilled and `text_format` proves the
result parses. Parameter keys and meanings: reference/trtllm-facts.md §3b (the C++ backend's
model_instance_state.cc reads them); booleans are written "true"/"false", which its parser accepts.

The model set of one trt-engine build, every model pinned to the same version N:
    <model>-engine          C++ `tensorrtllm` backend: in-flight batching over the engine in N/engine
    <model>-preprocessing   Python: tokenizer (the image's inflight_batcher_llm preprocessing model.py)
    <model>-postprocessing  Python: detokenizer (same source)
    <model>-ensemble        text in, text out, for plain Triton (KServe) clients; trtpipe's frontend calls -engine
A speculating target's draft is its own build and its own model set (`<draft>-engine`, ...); the target's
engine config names it in the `trtpipe_draft_model_name` parameter, which the C++ backend does not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from trtpipe.errors import ConfigError
from trtpipe.repo import tensorrtllm_tensors as T
from trtpipe.spec import ServingSpec, engine_model_name
from trtpipe.trt.guided_decoding import TOKENIZER_INFO_FILE

# Data types the templates leave as keys; TYPE_FP16 is what the 1.x docs fill for Llama models.
TEMPLATE_TYPES = {"logits": "TYPE_FP32", "encoder_features": "TYPE_FP16", "prompt_table": "TYPE_FP16"}
EXECUTOR_WORKER = "/opt/tritonserver/backends/tensorrtllm/trtllmExecutorWorker"
BATCHING_STRATEGY = "inflight_fused_batching"
# Names the draft's engine model in a speculating target's config: trtpipe's own key, ignored by the backend.
DRAFT_PARAMETER = "trtpipe_draft_model_name"


@dataclass(frozen=True)
class RepoNames:
    model: str

    @property
    def engine(self) -> str:
        return engine_model_name(self.model)

    @property
    def preprocessing(self) -> str:
        return f"{self.model}-preprocessing"

    @property
    def postprocessing(self) -> str:
        return f"{self.model}-postprocessing"

    @property
    def ensemble(self) -> str:
        return f"{self.model}-ensemble"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _add_tensors(container, rows, types=TEMPLATE_TYPES) -> None:
    for name, dtype, dims, flags in rows:
        tensor = container.add(name=name, data_type=mc.DataType.Value(types.get(dtype, dtype)), dims=dims)
        if "opt" in flags:
            tensor.optional = True
        if "scalar" in flags:
            tensor.reshape.SetInParent()  # reshape: { shape: [ ] }
        if "ragged" in flags:
            tensor.allow_ragged_batch = True


def _dynamic_batching(cfg: mc.ModelConfig, spec: ServingSpec) -> None:
    cfg.dynamic_batching.preferred_batch_size.append(spec.max_batch_size)
    cfg.dynamic_batching.max_queue_delay_microseconds = spec.max_queue_delay_microseconds
    # The C++ backend reads this bound too; 0 means unbounded in Triton, the frontend bounds the queue.
    cfg.dynamic_batching.default_queue_policy.max_queue_size = spec.max_queue_size


def engine_parameters(spec: ServingSpec, engine_dir: str | Path, *, gpu_device_ids: Sequence[int] | None = None,
                      participant_ids: Sequence[int] | None = None) -> dict[str, str]:
    """The `parameters` of a tensorrtllm model: the ones trtpipe decides, everything else left to the
    C++ defaults by not writing it (for the keys read inside a try, an absent key and an unfilled
    `${key}` behave the same; the three guided-decoding keys are read without one and always written)."""
    params = {
        "gpt_model_type": BATCHING_STRATEGY,
        "gpt_model_path": str(engine_dir),
        "max_beam_width": "1",
        "batch_scheduler_policy": spec.batch_scheduler_policy,
        "kv_cache_free_gpu_mem_fraction": str(spec.kv_cache_free_mem_fraction),
        # NOTE: the C++ default for reuse is true when unset; we always write the configured value.
        "enable_kv_cache_reuse": _bool(spec.enable_kv_cache_reuse),
        "enable_chunked_context": _bool(spec.enable_chunked_context),
        # Responses carry generated tokens only, streaming or not: the frontend owns the prompt.
        "exclude_input_in_output": "true",
        "executor_worker_path": EXECUTOR_WORKER,
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        # NOTE: these three are not optional: getGuidedDecodingConfigFromParams() reads them without a
        # try, so a config without them fails to load ("Cannot find parameter with name: tokenizer_dir").
        # Empty values mean no guided decoding; tokenizer_dir stays empty either way (the C++ workflow does not
        # use it: it compiles guides against the tokenizer info file, trt/guided_decoding.py).
        "tokenizer_dir": "",
        "guided_decoding_backend": spec.guided_decoding or "",
        # The build's tokenizer_info stage wrote it beside the engine; the backend opens it as given (absolute).
        "xgrammar_tokenizer_info_path": str(Path(engine_dir) / TOKENIZER_INFO_FILE) if spec.guided_decoding else "",
    }
    if spec.draft_model_name:
        params[DRAFT_PARAMETER] = RepoNames(spec.draft_model_name).engine
    if spec.max_tokens_in_paged_kv_cache is not None:
        params["max_tokens_in_paged_kv_cache"] = str(spec.max_tokens_in_paged_kv_cache)
    if gpu_device_ids:
        params["gpu_device_ids"] = ",".join(str(i) for i in gpu_device_ids)
    if participant_ids:
        params["participant_ids"] = ",".join(str(i) for i in participant_ids)
    return params


def engine_model_config(spec: ServingSpec, model_name: str | None = None, live_version: int | None = None, *,
                        engine_dir: str | Path | None = None, gpu_device_ids: Sequence[int] | None = None,
                        participant_ids: Sequence[int] | None = None) -> mc.ModelConfig:
    """The `<model>-engine` model: TensorRT-LLM's `tensorrt_llm` model, decoupled, in-flight batching.

    engine_dir must be the absolute path Triton will see: the C++ backend opens gpt_model_path as given,
    relative to nothing. gpu_device_ids/participant_ids are for orchestrator mode (serve/process/trt_launch.py)."""
    name = model_name or RepoNames(spec.model_name).engine
    if engine_dir is None:
        raise ConfigError(f"no engine directory given for {name}", where="engine_model_config",
                          fix="pass engine_dir=<repo>/<model>-engine/<version>/engine (an absolute path)")
    if not Path(engine_dir).is_absolute():
        raise ConfigError(f"engine_dir {engine_dir} is relative; the tensorrtllm backend opens it as given",
                          where="engine_model_config", fix="pass an absolute path")
    cfg = mc.ModelConfig(name=name, backend="tensorrtllm", max_batch_size=spec.max_batch_size)
    # Decoupled: streaming responses, and the only mode in which the backend accepts batch > 1 requests.
    cfg.model_transaction_policy.decoupled = True
    _dynamic_batching(cfg, spec)
    if live_version is not None:
        cfg.version_policy.specific.versions.append(live_version)
    _add_tensors(cfg.input, T.ENGINE_INPUTS)
    _add_tensors(cfg.output, T.ENGINE_OUTPUTS)
    # NOTE: one instance, KIND_CPU, as upstream: the backend places ranks by gpu_device_ids / MPI rank,
    # not by instance_group; serving.instance_count applies to the Python models only.
    cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    for key, value in engine_parameters(spec, engine_dir, gpu_device_ids=gpu_device_ids,
                                        participant_ids=participant_ids).items():
        cfg.parameters[key].string_value = value
    return cfg


def _pin(cfg: mc.ModelConfig, live_version: int | None) -> None:
    if live_version is not None:
        cfg.version_policy.specific.versions.append(live_version)


def preprocessing_config(spec: ServingSpec, tokenizer_dir: str | Path, live_version: int | None = None) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=RepoNames(spec.model_name).preprocessing, backend="python",
                         max_batch_size=spec.max_batch_size)
    _pin(cfg, live_version)
    _dynamic_batching(cfg, spec)
    _add_tensors(cfg.input, T.PRE_INPUTS)
    _add_tensors(cfg.output, T.PRE_OUTPUTS)
    cfg.instance_group.add(count=spec.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    # multimodal_model_path must be present (the model indexes it unconditionally); "" means text-only.
    for key, value in {"tokenizer_dir": str(tokenizer_dir), "add_special_tokens": "true",
                       "multimodal_model_path": ""}.items():
        cfg.parameters[key].string_value = value
    return cfg


def postprocessing_config(spec: ServingSpec, tokenizer_dir: str | Path, live_version: int | None = None) -> mc.ModelConfig:
    cfg = mc.ModelConfig(name=RepoNames(spec.model_name).postprocessing, backend="python",
                         max_batch_size=spec.max_batch_size)
    _pin(cfg, live_version)
    cfg.dynamic_batching.SetInParent()
    _add_tensors(cfg.input, T.POST_INPUTS)
    _add_tensors(cfg.output, T.POST_OUTPUTS)
    cfg.instance_group.add(count=spec.instance_count, kind=mc.ModelInstanceGroup.KIND_CPU)
    cfg.parameters["tokenizer_dir"].string_value = str(tokenizer_dir)
    cfg.parameters["skip_special_tokens"].string_value = "true"
    return cfg


def ensemble_config(spec: ServingSpec, live_version: int | None = None) -> mc.ModelConfig:
    """Steps call version -1 (the one each model's policy has loaded), as upstream: during a switch the
    old ensemble then reaches the new composing models instead of an unloaded version."""
    names = RepoNames(spec.model_name)
    step_model = {"pre": names.preprocessing, "engine": names.engine, "post": names.postprocessing}
    cfg = mc.ModelConfig(name=names.ensemble, platform="ensemble", max_batch_size=spec.max_batch_size)
    _pin(cfg, live_version)
    _add_tensors(cfg.input, [row[:4] for row in T.ENSEMBLE_INPUTS])
    _add_tensors(cfg.output, [row[:4] for row in T.ENSEMBLE_OUTPUTS])
    steps = {key: cfg.ensemble_scheduling.step.add(model_name=model, model_version=-1)
             for key, model in step_model.items()}
    for ensemble_name, *_, (step, tensor) in T.ENSEMBLE_INPUTS:
        steps[step].input_map[tensor] = ensemble_name
    for pre_out, internal, engine_in in T.ENSEMBLE_PRE_TO_ENGINE:
        steps["pre"].output_map[pre_out] = internal
        steps["engine"].input_map[engine_in] = internal
    steps["engine"].output_map["output_ids"] = "_TOKENS_BATCH"
    steps["engine"].output_map["sequence_length"] = "_SEQUENCE_LENGTH"
    steps["post"].input_map["TOKENS_BATCH"] = "_TOKENS_BATCH"
    steps["post"].input_map["SEQUENCE_LENGTH"] = "_SEQUENCE_LENGTH"
    for ensemble_name, *_, (step, tensor) in T.ENSEMBLE_OUTPUTS:
        steps[step].output_map[tensor] = ensemble_name
    return cfg


def model_set_configs(spec: ServingSpec, *, repo_dir: str | Path, live_version: int,
                      gpu_device_ids: Sequence[int] | None = None) -> dict[str, mc.ModelConfig]:
    """Every model of one trt-engine build, keyed by Triton model name, in the order publish writes them
    (the engine last: its config names the live version the frontend and `trtpipe models` read). Each
    model reads files from its own version directory: <repo>/<name>/<version>/{engine,tokenizer}."""
    repo_dir = Path(repo_dir).resolve()
    names = RepoNames(spec.model_name)

    def version_dir(name: str) -> Path:
        return repo_dir / name / str(live_version)

    return {
        names.preprocessing: preprocessing_config(spec, version_dir(names.preprocessing) / "tokenizer", live_version),
        names.postprocessing: postprocessing_config(spec, version_dir(names.postprocessing) / "tokenizer",
                                                    live_version),
        names.ensemble: ensemble_config(spec, live_version),
        names.engine: engine_model_config(spec, names.engine, live_version,
                                          engine_dir=version_dir(names.engine) / "engine",
                                          gpu_device_ids=gpu_device_ids),
    }


def to_pbtxt(msg: mc.ModelConfig) -> str:
    return text_format.MessageToString(msg)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())
