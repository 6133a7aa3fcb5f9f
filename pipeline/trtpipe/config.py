"""The typed build config: one YAML file per deployable model under build_configs/.

A config names its source (a pinned Hugging Face repo, a local directory, or the project's own synthetic
checkpoint), its backend, quantization, parallelism, engine limits, speculation, serving and frontend
settings. `extends:` derives a variant from another config; `--set key.path=value` overrides one value.
Every error names the file, the key, what was found and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trtpipe import backend_registry
from trtpipe.errors import ConfigError

Dtype = Literal["float32", "float16", "bfloat16"]
SpeculationMethod = Literal["draft-target", "eagle3", "ngram"]
SchedulerPolicy = Literal["guaranteed_no_evict", "max_utilization"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    """Exactly one of hf / path / synthetic."""

    hf: str | None = Field(None, description="Hugging Face repo id, e.g. meta-llama/Llama-3.1-8B-Instruct")
    revision: str | None = Field(None, description="commit sha, tag or branch; resolved to a sha and recorded")
    path: str | None = Field(None, description="a local Hugging Face-format checkpoint directory")
    synthetic: str | None = Field(None, description="a checkpoint the project generates itself: tiny-llama, tiny-llama-draft")
    allow_pickle: bool = False
    allow_custom_code: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> "Source":
        given = [k for k in ("hf", "path", "synthetic") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of hf, path, synthetic (found {given or 'none'})")
        if self.hf and not self.revision:
            raise ValueError("an hf source needs a pinned `revision` (a commit sha or tag)")
        return self


class Calibration(_Strict):
    dataset: str = "cnn_dailymail"
    size: int = Field(512, gt=0)
    seed: int = 0


class Quantization(_Strict):
    # Which formats exist, and which backend accepts which, is each backend's `quant_formats` table
    # (backend_registry.py); the backend check below refuses the rest, naming the backends that accept it.
    format: str
    kv_cache_dtype: Literal["fp8", "int8"] | None = None
    group_size: int = Field(128, gt=0)
    calibration: Calibration = Calibration()


class Parallelism(_Strict):
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    # Mixture-of-experts expert parallelism (trtllm-pytorch: moe_expert_parallel_size); None = the backend's default.
    ep: int | None = Field(None, ge=1)

    @property
    def world_size(self) -> int:
        return self.tp * self.pp


class EngineLimits(_Strict):
    max_batch_size: int = Field(64, ge=1)
    max_input_len: int = Field(1024, ge=1)
    max_seq_len: int = Field(2048, ge=2)
    max_num_tokens: int = Field(8192, ge=1)
    tokens_per_block: int = Field(32, ge=1)
    max_tokens_in_paged_kv_cache: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> "EngineLimits":
        if self.max_input_len >= self.max_seq_len:
            raise ValueError(f"max_input_len ({self.max_input_len}) must be < max_seq_len ({self.max_seq_len})")
        return self


class Speculation(_Strict):
    """draft-target: a separate draft model proposes, the target verifies. eagle3: an EAGLE-3 head (its own
    checkpoint, named by a build config like a draft) proposes inside the engine. ngram: prompt lookup, no
    draft. Which methods a backend serves, and whether the draft is its own published model or part of the
    engine, is the backend's (backend_registry.py)."""

    method: SpeculationMethod = "draft-target"
    draft: str | None = Field(None, description="build config of the draft model or EAGLE-3 head, e.g. tiny-llama-draft")
    max_draft_len: int = Field(4, ge=1, le=16)
    max_matching_ngram_size: int = Field(2, ge=1, description="ngram: the longest prompt n-gram matched")

    @model_validator(mode="after")
    def _draft_given(self) -> "Speculation":
        if self.method != "ngram" and not self.draft:
            raise ValueError(f"speculation method {self.method} needs `draft`: the build config of the draft model")
        if self.method == "ngram" and self.draft:
            raise ValueError("ngram speculation uses no draft model: remove speculation.draft")
        return self


class Serving(_Strict):
    kv_cache_free_gpu_mem_fraction: float = Field(0.9, gt=0, le=1)
    enable_kv_cache_reuse: bool = True
    batch_scheduler_policy: SchedulerPolicy = "guaranteed_no_evict"
    enable_chunked_context: bool = True
    max_queue_delay_microseconds: int = Field(0, ge=0)
    max_queue_size: int = Field(0, ge=0)
    instance_count: int = Field(1, ge=1)
    # Tokens per streamed response after the first (vLLM's --stream-interval). 1 sends every token as it is made;
    # N > 1 sends the first token at once and then every N tokens, so the gRPC and HTTP work per token falls
    # about N-fold under load at the price of burstier inter-token gaps. Reference backend only.
    stream_interval: int = Field(1, ge=1)
    # The grammar library the engine enforces structured outputs with (response_format, forced tool calls, guided_*),
    # or "none": the frontend then refuses those requests with a 400. Unset: the backend's default (its first entry
    # in `guided_decoding_backends`, backend_registry.py); which values a backend accepts is its own table.
    guided_decoding: Literal["xgrammar", "llguidance", "none"] | None = None


class LlmApi(_Strict):
    """Settings only the TensorRT-LLM LLM API has (backend trtllm-pytorch); written into its LlmArgs YAML."""

    cuda_graphs: bool = True
    # Largest batch captured as a CUDA graph; None = engine.max_batch_size.
    cuda_graph_max_batch_size: int | None = Field(None, ge=1)
    cuda_graph_padding: bool = True


class Frontend(_Strict):
    default_max_tokens: int = Field(256, ge=1)
    max_max_tokens: int = Field(1024, ge=1)
    max_concurrency: int = Field(256, ge=1)
    max_queued: int = Field(512, ge=0)


class Gate(_Strict):
    """Checks a new engine must pass before it is published (`trtpipe build --gate`, always in --all)."""

    golden_prompts: list[str] = ["Tell me a story about a small robot.", "The capital of France is",
                                 "def add(a, b):"]
    golden_max_tokens: int = Field(16, ge=1)
    load_test_requests: int = Field(8, ge=1)
    load_test_output_tokens: int = Field(32, ge=1)
    min_output_tokens_per_s: float = Field(20.0, ge=0)


class BuildConfig(_Strict):
    name: str
    description: str = ""
    backend: str = "reference"
    source: Source
    dtype: Dtype = "bfloat16"
    quantization: Quantization | None = None
    parallelism: Parallelism = Parallelism()
    engine: EngineLimits = EngineLimits()
    speculation: Speculation | None = None
    serving: Serving = Serving()
    frontend: Frontend = Frontend()
    gate: Gate = Gate()
    llm_api: LlmApi = LlmApi()

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: Any) -> Any:
        """Manifests written before serving.guided_decoding hold llm_api.guided_decoding_backend: read it there.
        (A YAML file that still has it is refused by load_config, naming the new key.)"""
        api = data.get("llm_api") if isinstance(data, dict) else None
        if isinstance(api, dict) and "guided_decoding_backend" in api:
            api = dict(api)
            old = api.pop("guided_decoding_backend")
            serving = dict(data.get("serving") or {})
            if old is not None:
                serving.setdefault("guided_decoding", old)
            data = {**data, "llm_api": api, "serving": serving}
        return data

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in backend_registry.backend_names():
            raise ValueError(f"unknown backend {value!r}; use one of: {', '.join(backend_registry.backend_names())}")
        return value

    @model_validator(mode="after")
    def _backend_rules(self) -> "BuildConfig":
        # What a backend accepts is its row in backend_registry.py; check_config refuses the rest.
        backend_registry.check_config(backend_registry.capabilities(self.backend), self)
        if self.frontend.max_max_tokens > self.engine.max_seq_len - 1:
            raise ValueError(f"frontend.max_max_tokens ({self.frontend.max_max_tokens}) must be < "
                             f"engine.max_seq_len ({self.engine.max_seq_len})")
        return self


def config_search_path() -> list[Path]:
    """Where `trtpipe build NAME` looks for NAME.yaml: $TRTPIPE_CONFIG_PATH, ./build_configs, the checkout's."""
    dirs = [Path(p) for p in os.environ.get("TRTPIPE_CONFIG_PATH", "").split(os.pathsep) if p]
    dirs.append(Path.cwd() / "build_configs")
    dirs.append(Path(__file__).resolve().parents[2] / "build_configs")
    return dirs


def find_config(name_or_path: str) -> Path:
    as_path = Path(name_or_path)
    if as_path.suffix in (".yaml", ".yml") or as_path.is_file():
        if not as_path.is_file():
            raise ConfigError(f"config file {as_path} does not exist", fix="give an existing YAML file or a config name")
        return as_path
    for d in config_search_path():
        candidate = d / f"{name_or_path}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in config_search_path() if d.is_dir() for p in d.glob("*.yaml")})
    raise ConfigError(f"no build config named {name_or_path!r}",
                      fix=f"use one of: {', '.join(known) or '(none found)'}, or a path to a YAML file")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", where=str(path), fix="correct the YAML syntax") from None
    if not isinstance(data, dict):
        raise ConfigError("a build config must be a YAML mapping", where=str(path), fix="see build_configs/tiny-llama.yaml")
    return data


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _raw_with_extends(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path.resolve() in seen:
        raise ConfigError("`extends` forms a cycle", where=str(path), fix="remove the circular extends")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    parent_path = path.parent / f"{parent}.yaml" if (path.parent / f"{parent}.yaml").is_file() else find_config(str(parent))
    return _deep_merge(_raw_with_extends(parent_path, seen + (path.resolve(),)), data)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`engine.max_batch_size=8` -> (["engine", "max_batch_size"], 8); values parse as YAML scalars."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r} is not KEY=VALUE", fix="write e.g. --set engine.max_batch_size=8")
    return key.split("."), yaml.safe_load(value)


def _apply_override(data: dict, keys: list[str], value: Any) -> None:
    node = data
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        node = node[k]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(keys)}: {k} is not a section", fix="set a leaf key")
    node[keys[-1]] = value


def _format_validation(path: Path, err: ValidationError) -> ConfigError:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        found = e.get("input")
        found_s = "" if isinstance(found, dict) else f" (found {found!r})"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}{found_s}")
    return ConfigError("invalid build config:\n" + "\n".join(lines), where=str(path),
                       fix="correct the keys above; build_configs/tiny-llama.yaml shows every section")


def load_config(name_or_path: str, overrides: list[str] = ()) -> BuildConfig:
    path = find_config(name_or_path)
    data = _raw_with_extends(path)
    for item in overrides:
        _apply_override(data, *parse_override(item))
    data.setdefault("name", path.stem)
    if isinstance(data.get("llm_api"), dict) and "guided_decoding_backend" in data["llm_api"]:
        raise ConfigError("llm_api.guided_decoding_backend is now serving.guided_decoding (xgrammar, llguidance or "
                          "none), one switch for every backend", where=str(path),
                          fix="move it: serving: {guided_decoding: xgrammar}")
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as e:
        raise _format_validation(path, e) from None


def load_draft(config: BuildConfig) -> BuildConfig | None:
    """The build config of `config`'s draft (a draft model or an EAGLE-3 head), or None."""
    if config.speculation is None or config.speculation.draft is None:
        return None
    draft = load_config(config.speculation.draft)
    if draft.speculation:
        raise ConfigError(f"the draft config {draft.name!r} has a speculation section itself",
                          where="speculation.draft", fix="use a draft config without speculation")
    return draft
