"""`backend: reference`: trtpipe's own NumPy engine, on Triton's Python backend, on any CPU.

Stages: fetch -> convert (the packed NumPy engine format) -> quantize (weight-only int8/int4, optional) ->
compile (the servable engine directory plus a smoke test: it loads and generates). Publishes one model,
`<model>-engine`, whose Python model (model_repo/engine/1/model.py) is copied into each version.

A checkpoint that is already quantized (AWQ, GPTQ 4-bit, FP8: engine/prequantized.py) is converted into the
engine's own int4/fp8 formats as it is; any other quantized format, and `quantization:` on top of one, is refused
before any work: at preflight for a local path, right after fetch otherwise (check_checkpoint_quant).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from trtpipe.backends.base import Backend
from trtpipe.config import BuildConfig
from trtpipe.engine import Engine, EngineLimits, convert_checkpoint, quantize_checkpoint
from trtpipe.engine.checkpoint_quant import CheckpointQuant
from trtpipe.engine.sampling import MAX_TOP_LOG_PROBS
from trtpipe.engine.config import UnsupportedModelError
from trtpipe.errors import ConfigError, PublishError, SourceError, StageError
from trtpipe.gate import engine_gate
from trtpipe.repo import layout
from trtpipe.repo.model_config import reference_engine_config
from trtpipe.stages import fetch
from trtpipe.stages.base import Inputs, Stage, link_or_copy_tree
from trtpipe.stages.steps import InProcess, Step

FORMAT_VERSION = 1
# quantization.format -> the mode of trtpipe.engine.quantize_checkpoint
QUANT_MODES = {"int8_wo": "int8", "int4_wo": "int4"}
SMOKE_PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]
ADAPTER = Path(__file__).resolve().parents[3] / "model_repo" / "engine" / "1" / "model.py"


def _convert_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"fetch": inputs["fetch"].key, "backend": config.backend, "dtype": config.dtype, "format": FORMAT_VERSION}


def _convert(config: BuildConfig, hf_dir: Path, out_dir: Path) -> dict[str, Any]:
    try:
        return {"summary": convert_checkpoint(hf_dir, out_dir, dtype=config.dtype)}
    except UnsupportedModelError as e:
        raise SourceError(f"the reference engine cannot run this checkpoint: {e}", where="convert",
                          fix="use a Llama-family checkpoint it supports (Llama, Mistral without sliding window, "
                              "Qwen2) in full precision or as AWQ/GPTQ 4-bit/FP8 (README: Pre-quantized "
                              "checkpoints), or a GPU backend (backend: trtllm-pytorch) for other architectures") from None


def _convert_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    hf_dir = inputs["fetch"].path
    return [InProcess(f"in-process: trtpipe.engine.convert_checkpoint({hf_dir}, <tmp>, dtype={config.dtype})",
                      lambda: _convert(config, hf_dir, out_dir))]


def _quantize_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    q = config.quantization
    return {"convert": inputs["convert"].key, "format": q.format, "group_size": q.group_size}


def _quantize_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    q, src = config.quantization, inputs["convert"].path
    mode = QUANT_MODES[q.format]
    return [InProcess(f"in-process: trtpipe.engine.quantize_checkpoint({src}, <tmp>, {mode!r}, "
                      f"group_size={q.group_size}); records the logit delta",
                      lambda: {"quantization_report": quantize_checkpoint(src, out_dir, mode, group_size=q.group_size)})]


def _compile_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"quantize": inputs["quantize"].key, "backend": config.backend, "engine": config.engine.model_dump()}


def _smoke_gate(engine_dir: Path) -> dict[str, Any]:
    engine = Engine.from_dir(engine_dir, EngineLimits(max_batch_size=2, max_seq_len=64, max_num_tokens=64,
                                                      max_tokens_in_paged_kv_cache=256))
    vocab = engine.config.vocab_size
    t0 = time.perf_counter()
    out = engine.generate([[t % vocab for t in SMOKE_PROMPT]], max_new_tokens=4)
    seconds = time.perf_counter() - t0
    if len(out[0]) == 0:
        raise StageError("the engine loaded but generated nothing", where="compile (smoke gate)",
                         fix="check the checkpoint; rebuild with --force convert")
    return {"smoke_gate": {"passed": True, "generated_tokens": len(out[0]), "seconds": round(seconds, 3)}}


def _compile_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    src = inputs["quantize"].path

    def link_and_smoke() -> dict[str, Any]:
        link_or_copy_tree(src, out_dir)
        return _smoke_gate(out_dir)  # looked up at run time, so a test can replace it

    return [InProcess(f"in-process: link the files of {src} into <tmp>; smoke gate: load the engine and "
                      "generate 4 tokens", link_and_smoke)]


STAGES = (
    fetch.STAGE,
    Stage("convert", 1, _convert_key, _convert_plan),
    Stage("quantize", 1, _quantize_key, _quantize_plan,
          passthrough=lambda c: None if c.quantization else "no quantization"),
    Stage("compile", 1, _compile_key, _compile_plan),
)


class ReferenceBackend(Backend):
    name = "reference"
    framework = "trtpipe reference engine (CPU, NumPy) on Triton's Python backend"

    @property
    def stages(self) -> tuple[Stage, ...]:
        return STAGES

    def preflight_build(self, config: BuildConfig) -> None:
        # A local checkpoint's config files are here already: refuse its format before anything is copied.
        path = Path(config.source.path).expanduser() if config.source.path else None
        if path is not None and (path / "config.json").is_file():
            self.check_checkpoint_quant(config, fetch.checkpoint_quant(path))

    def describe_preflight(self, config: BuildConfig) -> list[str]:
        when = "now, from source.path's config files" if config.source.path else "right after fetch"
        return [f"checkpoint format ({when}): a pre-quantized checkpoint must be AWQ gemm 4-bit, GPTQ 4-bit or FP8 "
                "e4m3, and then the config sets no `quantization:`"]

    def serving_spec(self, config: BuildConfig):
        # The engine returns top alternatives and prompt log-probs, and resumes a grammar mid-output.
        return dataclasses.replace(super().serving_spec(config), max_top_log_probs=MAX_TOP_LOG_PROBS,
                                   returns_prompt_log_probs=True, resumes_guided_decoding=True)

    def check_can_publish(self, repo: Path, spec) -> None:
        """A speculating target names its draft by the draft's published name: it must be live here (build()
        publishes it first), or the frontend would silently serve the target without speculation."""
        if spec.draft_model_name and layout.live_version(repo / layout.engine_model_name(spec.draft_model_name)) is None:
            raise PublishError(f"{spec.model_name} speculates with {spec.draft_model_name}, which is not published "
                               f"in {repo}", where="speculation.draft",
                               fix=f"`trtpipe build {spec.model_name} --repo {repo}` builds and publishes the draft "
                                   "first")

    def engine_version_files(self) -> dict[str, Path]:
        return {"model.py": ADAPTER}

    def describe_engine_files(self) -> list[str]:
        return ["model.py (the Triton adapter, model_repo/engine/1/model.py)"]

    def model_configs(self, repo: Path, spec, live: int) -> dict:
        name = spec.engine_model
        return {name: reference_engine_config(spec, name, live)}

    def run_gate(self, config, engine_dir, checkpoint_dir, weights_key, live):
        return engine_gate(config, engine_dir, checkpoint_dir, weights_key, live)

    def describe_speculation(self, config: BuildConfig) -> str:
        s = config.speculation
        return (f"draft {s.draft}, up to {s.max_draft_len} tokens per step, proposed by the frontend and verified "
                f"by the target (draft_input_ids)")

    def plan_note(self) -> str:
        return "Backend `reference`: the CPU engine; no TensorRT-LLM commands."


BACKEND = ReferenceBackend()
