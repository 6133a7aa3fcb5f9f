"""The interface every backend implements: all that differs between reference, trt-engine and trtllm-pytorch.

A backend says which stages run and with which recipe (stages as `Stage` objects whose plans are lists of
steps, so the dry run prints what the build runs), what the machine must have (preflight), which Triton models
it publishes and their configs, how its gate runs, and how Triton is launched for it. What it accepts in a
config (quantization formats, speculation methods, ...) is its row in backend_registry.py, read here as
attributes. The build loop, the cache, manifests, repository versioning, the dry run, the planner and serving
ask the object; none of them names a backend.

Defaults here are the behaviour shared by most backends; a backend overrides what differs.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trtpipe import backend_registry
from trtpipe.backend_registry import BackendCapabilities
from trtpipe.gate import GateResult
from trtpipe.spec import ServingSpec

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2 as mc

    from trtpipe.config import BuildConfig
    from trtpipe.engine.checkpoint_quant import CheckpointQuant
    from trtpipe.manifest import Manifest
    from trtpipe.stages.base import Stage


@dataclass(frozen=True)
class StagedDir:
    """A directory a publish stages and renames into place, with what it holds (for the dry run)."""

    model_dir: Path
    files: list[str]


def _capability(name: str) -> property:
    """A BackendCapabilities field, read as an attribute of the backend object (`backend.draft_is_a_model`)."""
    return property(lambda self: getattr(self.capabilities, name), doc=f"backend_registry.BackendCapabilities.{name}")


class Backend(ABC):
    name: str = ""
    # One line for plans and the README's table.
    framework: str = ""

    # --- config -------------------------------------------------------------------------------------------
    @property
    def capabilities(self) -> BackendCapabilities:
        """What this backend accepts in a config: its row in backend_registry.py, the one place it is stated."""
        return backend_registry.capabilities(self.name)

    quant_formats = _capability("quant_formats")
    kv_cache_dtypes = _capability("kv_cache_dtypes")
    speculation_methods = _capability("speculation_methods")
    draft_is_a_model = _capability("draft_is_a_model")
    max_world_size = _capability("max_world_size")
    supports_stream_interval = _capability("supports_stream_interval")
    uses_llm_api = _capability("uses_llm_api")
    guided_decoding_backends = _capability("guided_decoding_backends")
    refused_dtypes = _capability("refused_dtypes")
    prequantized = _capability("prequantized")
    prequantized_source = _capability("prequantized_source")

    # --- stages -------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def stages(self) -> tuple["Stage", ...]:
        """The stages a build runs, in order; the last one's artifact is the published engine/ directory."""

    def guided_decoding(self, config: "BuildConfig") -> str | None:
        """The grammar library the engine enforces guides with for `config`, or None when guided decoding is off."""
        return backend_registry.guided_decoding(self.capabilities, config)

    @property
    def engine_stage(self) -> str:
        """The stage whose artifact is published as the version's engine/ directory."""
        return self.stages[-1].name

    # --- machine ------------------------------------------------------------------------------------------
    def preflight_build(self, config: "BuildConfig") -> None:
        """Refuse before any work when this machine cannot build `config` (with what to do instead)."""

    def describe_preflight(self, config: "BuildConfig") -> list[str]:
        return []

    def check_checkpoint_quant(self, config: "BuildConfig", quant: "CheckpointQuant | None") -> None:
        """Refuse a checkpoint that is already quantized in a format this backend cannot serve, or a config that
        asks to quantize it again. The build calls it right after fetch (and a backend may call it sooner);
        `quant` is None for a full-precision checkpoint. The rules are the backend's row in backend_registry.py,
        one function for every backend."""
        backend_registry.check_prequantized(self.name, quant, config)

    def check_serving_machine(self, manifest: "Manifest", machine: Any = None) -> list[str]:
        """Before serving a published version (its manifest holds the config it was built from): refuse
        (PreflightError) or return the checks that passed. `machine`: a trt.preflight.Machine, or None to
        detect this one."""
        return []

    # --- the model repository -----------------------------------------------------------------------------
    def serving_spec(self, config: "BuildConfig") -> "ServingSpec":
        # The frontend sends guides only to an engine whose spec says it enforces them (serve/openai/validation.py).
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

