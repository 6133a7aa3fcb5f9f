"""The interface every backend implements: all that differs between reference, trt-engine and trtllm-pytorch.

A backend says which stages run and with which recipe (stages as `Stage` objects whose plans are lists of
steps, so the dry run prints what the build runs), which quantization formats it accepts (one table), what
the machine must have (preflight), which Triton models it publishes and their configs, how its gate runs,
and how Triton is launched for it. Config validation, the build loop, the cache, manifests, repository
versioning, the dry run, the planner and serving ask the object; none of them names a backend.

Defaults here are the behaviour shared by most backends; a backend overrides what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

    from trtpipe.config import BuildConfig
    from trtpipe.gate import GateResult
    from trtpipe.manifest import Manifest
    from trtpipe.spec import ServingSpec
    from trtpipe.stages.base import Stage


@dataclass(frozen=True)
class StagedDir:
    """A directory a publish stages and renames into place, with what it holds (for the dry run)."""

    model_dir: Path
    files: list[str]


class Backend(ABC):
    name: str = ""
    # One line for plans and the README's table.
    framework: str = ""
    # quantization.format -> how this backend produces it. A format not here is refused at config load.
    quant_formats: Mapping[str, str] = {}
    kv_cache_dtypes: tuple[str, ...] = ()
    # speculation.method values this backend serves.
    speculation_methods: tuple[str, ...] = ()
    # True: a draft is its own build and its own published model set, and the frontend runs draft-target
    # speculation against it. False: the engine speculates itself; the draft (if any) is only fetched.
    draft_is_a_model: bool = True
    max_world_size: int | None = None
    supports_stream_interval: bool = False
    # The config's llm_api section and parallelism.ep are TensorRT-LLM LLM API settings.
    uses_llm_api: bool = False
    # serving.guided_decoding values this backend's engine enforces guides with, its default first; "none" (the
    # frontend refuses guided requests) is always accepted.
    guided_decoding_backends: tuple[str, ...] = ()

    # --- config -------------------------------------------------------------------------------------------
    def check_config(self, config: "BuildConfig") -> None:
        """Raise ValueError (config.py turns it into a ConfigError naming the file) for what this backend
        cannot build."""
        q = config.quantization
        if q and q.format not in self.quant_formats:
            from trtpipe.backend_registry import backend_names, get_backend

            others = [n for n in backend_names() if n != self.name and q.format in get_backend(n).quant_formats]
            need = f"needs backend {' or '.join(others)}" if others else "is not a format of any backend"
            raise ValueError(f"quantization.format {q.format!r} {need}; "
                             f"the {self.name} backend supports {', '.join(self.quant_formats)}")
        if q and q.kv_cache_dtype and q.kv_cache_dtype not in self.kv_cache_dtypes:
            raise ValueError(f"quantization.kv_cache_dtype {q.kv_cache_dtype!r} is not supported by the {self.name} "
                             f"backend; use one of {', '.join(self.kv_cache_dtypes) or '(none: leave it unset)'}")
        if self.max_world_size is not None and config.parallelism.world_size > self.max_world_size:
            raise ValueError(f"the {self.name} backend runs on one CPU process: set parallelism tp: 1, pp: 1")
        if not self.uses_llm_api and (config.llm_api != type(config.llm_api)() or config.parallelism.ep):
            raise ValueError(f"llm_api and parallelism.ep are settings of the TensorRT-LLM LLM API (backend "
                             f"trtllm-pytorch); the {self.name} backend has none: remove them")
        if not self.supports_stream_interval and config.serving.stream_interval != 1:
            raise ValueError(f"serving.stream_interval applies to the reference backend only: the {self.name} "
                             "backend streams every token; remove it or set it to 1")
        g = config.serving.guided_decoding
        if g not in (None, "none") and g not in self.guided_decoding_backends:
            raise ValueError(f"serving.guided_decoding {g!r} is not available on the {self.name} backend; use one of "
                             f"{', '.join((*self.guided_decoding_backends, 'none'))}")
        s = config.speculation
        if s and s.method not in self.speculation_methods:
            raise ValueError(f"speculation.method {s.method!r} is not served by the {self.name} backend; it "
                             f"serves {', '.join(self.speculation_methods)}")

    # --- stages -------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def stages(self) -> tuple["Stage", ...]:
        """The stages a build runs, in order; the last one's artifact is the published engine/ directory."""

    def guided_decoding(self, config: "BuildConfig") -> str | None:
        """The grammar library the engine enforces guides with for `config`, or None when guided decoding is off."""
        g = config.serving.guided_decoding
        if g == "none" or not self.guided_decoding_backends:
            return None
        return g or self.guided_decoding_backends[0]

    @property
    def engine_stage(self) -> str:
        """The stage whose artifact is published as the version's engine/ directory."""
        return self.stages[-1].name

    # --- machine ------------------------------------------------------------------------------------------
    def preflight_build(self, config: "BuildConfig") -> None:
        """Refuse before any work when this machine cannot build `config` (with what to do instead)."""

    def describe_preflight(self, config: "BuildConfig") -> list[str]:
        return []

    def check_serving_machine(self, manifest: "Manifest", machine: Any = None) -> list[str]:
        """Before serving a published version (its manifest holds the config it was built from): refuse
        (PreflightError) or return the checks that passed. `machine`: a trt.preflight.Machine, or None to
        detect this one."""
        return []

    # --- the model repository -----------------------------------------------------------------------------
    def serving_spec(self, config: "BuildConfig") -> "ServingSpec":
        import dataclasses

        from trtpipe.spec import ServingSpec

        # The frontend sends guides only to an engine whose spec says it enforces them (serve/validation.py).
        return dataclasses.replace(ServingSpec.from_config(config), guided_decoding=self.guided_decoding(config))

    def check_can_publish(self, repo: Path, spec: "ServingSpec") -> None:
        """Refuse before anything is written (e.g. a missing upstream file, an unpublished draft)."""

    def engine_version_files(self) -> dict[str, Path]:
        """Files copied into `<model>-engine/N/` beside engine/ (name -> source), e.g. the Python model."""
        return {}

    def describe_engine_files(self) -> list[str]:
        return [f"{name} (copied from {src})" for name, src in self.engine_version_files().items()]

    def companion_names(self, spec: "ServingSpec") -> list[str]:
        """Models published next to `<model>-engine`, with the same version number."""
        return []

    def stage_companions(self, repo: Path, spec: "ServingSpec", version: int, tokenizer_dir: Path) -> list[Path]:
        return []

    def describe_companions(self, repo: Path, spec: "ServingSpec", version: int) -> list[StagedDir]:
        return []

    @abstractmethod
    def model_configs(self, repo: Path, spec: "ServingSpec", live: int) -> dict[str, "mc.ModelConfig"]:
        """Every config.pbtxt of the set pinned to version `live`, in write order (the engine's last)."""

    # --- gate and serving ---------------------------------------------------------------------------------
    def run_gate(self, config: "BuildConfig", engine_dir: Path, checkpoint_dir: Path, weights_key: str,
                 live: "Manifest | None") -> "GateResult":
        from trtpipe.gate import GateResult

        return GateResult(passed=True, skipped=True,
                          failures=[f"{self.name} gates run on a GPU host (not here)"])

    def describe_launch(self, config: "BuildConfig", repo: Path) -> list[str]:
        """How `trtpipe serve` would start Triton for this model (not part of the build); [] for the default."""
        return []

    def plan_commands(self, config: "BuildConfig", draft: "BuildConfig | None", world_size: int) -> list[str]:
        """The shell lines a plan's Serving Configuration shows for building and serving; [] for none."""
        return []

    def plan_note(self) -> str:
        return ""

    def describe_speculation(self, config: "BuildConfig") -> str:
        """The plan's Speculation row. Default: a draft model set of its own, driven by the frontend."""
        s = config.speculation
        return (f"draft {s.draft}, up to {s.max_draft_len} tokens per step, proposed by the frontend and verified "
                f"by the target (draft_input_ids; engine built with draft_tokens_external)")

