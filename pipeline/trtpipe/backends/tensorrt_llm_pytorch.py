"""`backend: trtllm-pytorch`: TensorRT-LLM >= 1.1 (the pinned image's) with its PyTorch backend, through the LLM API.

There is no convert or engine-build step: the PyTorch backend loads a Hugging Face checkpoint itself.
Stages: fetch -> quantize (optional: ModelOpt into a quantized Hugging Face checkpoint; FP8, FP8 KV, NVFP4
on Blackwell, INT4-AWQ) -> configure (the servable directory: `checkpoint/`, `draft/` for a draft model or
EAGLE-3 head, and `llm_api_options.yaml`, the LlmArgs that trtllm-serve and `LLM(**kwargs)` accept) ->
publish. Published as one model, `<model>-engine`: trtpipe's own decoupled Python model
(model_repo/llm_api_engine/1/model.py) driving `tensorrt_llm.LLM` behind the same token-id tensors as the
reference engine's model, so the frontend, manifests, gates, bench and rollback work unchanged.

Speculation happens inside TensorRT-LLM (speculative_config: EAGLE-3, draft-target or n-gram, in the names of the
pinned TensorRT-LLM; trt/llm_api_dialects.py). The draft is
not its own published model and the spec says `engine_speculation`, with no draft model name, so the
frontend never also runs its own draft-target loop for this model (serve/api/frontend.py draft_for).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tritonclient.grpc import model_config_pb2 as mc

from trtpipe.backend_registry import check_prequantized
from trtpipe.backends.base import Backend
from trtpipe.config import BuildConfig
from trtpipe.engine.sampling import MAX_TOP_LOG_PROBS
from trtpipe.errors import StageError
from trtpipe.repo.model_config import reference_engine_config
from trtpipe.spec import engine_model_name
from trtpipe.stages import fetch
from trtpipe.stages.base import Inputs, Stage, link_or_copy_tree
from trtpipe.stages.steps import InProcess, RunCommand, Step, Verify, WriteFile
from trtpipe.trt import preflight as machine_checks
from trtpipe.trt.llm_args import (CHECKPOINT_DIR, DECODING_TYPE, DRAFT_DIR, IMAGE, OPTIONS_FILE, RECORD_FILE, TOOLCHAIN,
                                  WRITTEN_FOR, LlmApiTools, llm_args_record, llm_args_yaml, quantize_command)
from trtpipe.trt.preflight import check_llm_api_toolchain, check_prequantized_machine, preflight
from trtpipe.trt.prequantized import check_local_source, describe_check, fetched, kv_cache_dtype, read_checked, record

ADAPTER = Path(__file__).resolve().parents[3] / "model_repo" / "llm_api_engine" / "1" / "model.py"
# quantization -> what ModelOpt's hf_quant_config.json must then say.
QUANT_ALGO = {"fp8": "FP8", "nvfp4": "NVFP4", "int4_awq": "W4A16_AWQ"}
KV_QUANT_ALGO = {"fp8": "FP8"}


def _quantize_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"fetch": inputs["fetch"].key, "backend": config.backend, "dtype": config.dtype, "toolchain": TOOLCHAIN,
            "quantization": config.quantization.model_dump()}


def _check_quantized(config: BuildConfig, out_dir: Path) -> dict[str, Any]:
    path = out_dir / "hf_quant_config.json"
    if not path.is_file() or not list(out_dir.glob("*.safetensors")):
        raise StageError(f"ModelOpt wrote no quantized Hugging Face checkpoint in {out_dir} (hf_quant_config.json "
                         "and *.safetensors)", where="quantize", fix="read the log above; check the ModelOpt version")
    found = json.loads(path.read_text()).get("quantization", {})
    q = config.quantization
    want = {"quant_algo": QUANT_ALGO[q.format], "kv_cache_quant_algo": KV_QUANT_ALGO.get(q.kv_cache_dtype)}
    got = {k: found.get(k) for k in want}
    if got != want:
        raise StageError(f"the quantized checkpoint says {got}; the config asked for {want}", where="quantize",
                         fix="check the ModelOpt version against TOOLCHAIN['modelopt'] and rebuild with --force quantize")
    return {"hf_quant_config": found}


def _checkpoint_quant(config: BuildConfig, inputs: Inputs):
    """(the fetched checkpoint's own quantization, the table row serving it); (None, None) before fetch has run
    (a dry run). Refuses what the LLM API does not load as it is, and ModelOpt on a quantized checkpoint
    (backend_registry.check_prequantized)."""
    hf_dir = inputs["fetch"].path
    return read_checked(config, hf_dir) if fetched(hf_dir) else (None, None)


def _quantize_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    q = config.quantization
    _checkpoint_quant(config, inputs)  # a quantized checkpoint is refused before ModelOpt runs (and in a dry run)
    cmd = quantize_command(config, inputs["fetch"].path, out_dir, LlmApiTools())
    return [Verify((describe_check(config),), lambda: record(config, *_checkpoint_quant(config, inputs))),
            RunCommand(cmd, out_dir.parent / f"{out_dir.name}.log", stage="quantize", meta_key="command"),
            Verify((f"verify: <tmp> holds *.safetensors and hf_quant_config.json with quant_algo "
                    f"{QUANT_ALGO[q.format]}, kv_cache_quant_algo {KV_QUANT_ALGO.get(q.kv_cache_dtype)}",),
                   lambda: _check_quantized(config, out_dir))]


def _configure_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"quantize": inputs["quantize"].key, "draft": inputs["draft"].key if "draft" in inputs else None,
            "backend": config.backend, "toolchain": TOOLCHAIN, "engine": config.engine.model_dump(),
            "serving": config.serving.model_dump(), "parallelism": config.parallelism.model_dump(),
            "speculation": config.speculation.model_dump() if config.speculation else None,
            "llm_api": config.llm_api.model_dump(), "dtype": config.dtype}


def _configure_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    checkpoint, draft = inputs["quantize"].path, inputs.get("draft")
    quant, row = _checkpoint_quant(config, inputs)

    def check() -> dict[str, Any]:
        # The format is known only now (preflight ran before fetch): refuse a GPU without kernels for it.
        meta = record(config, quant, row)
        if meta["prequantized"]:
            check_prequantized_machine(config, meta["prequantized"], machine_checks.detect_machine())
        return meta

    def link() -> dict[str, Any]:
        link_or_copy_tree(checkpoint, out_dir / CHECKPOINT_DIR)
        if draft is not None:
            link_or_copy_tree(draft.path, out_dir / DRAFT_DIR)
        return {}

    what = f"in-process: link the files of {checkpoint} into <tmp>/{CHECKPOINT_DIR}/"
    if draft is not None:
        what += f", and the {config.speculation.method} draft's {draft.path} into <tmp>/{DRAFT_DIR}/"
    return [Verify((describe_check(config) + "; and a GPU with kernels for it",), check),
            InProcess(what, link),
            WriteFile(out_dir / OPTIONS_FILE, llm_args_yaml(config, has_draft=draft is not None,
                                                            checkpoint_kv_cache=kv_cache_dtype(quant)),
                      f"the LLM API arguments (TorchLlmArgs) in TensorRT-LLM {WRITTEN_FOR}'s names, read by the Triton "
                      "model at load through TensorRT-LLM's own loader"),
            WriteFile(out_dir / RECORD_FILE, llm_args_record(),
                      "which TensorRT-LLM the arguments were written for (the Triton model and scripts/gpu-acceptance.sh "
                      "refuse one that spells them differently)")]


STAGES = (
    fetch.STAGE,
    Stage("quantize", 1, _quantize_key, _quantize_plan,
          passthrough=lambda c: None if c.quantization else "no quantization: the LLM API loads the checkpoint as it is"),
    # v2: a checkpoint that came quantized is checked against the LLM API's loaders; its FP8 KV cache is written out.
    Stage("configure", 2, _configure_key, _configure_plan),
)


class TensorrtLlmPytorchBackend(Backend):
    name = "trtllm-pytorch"
    framework = (f"TensorRT-LLM >= {TOOLCHAIN['min_tensorrt_llm']}, PyTorch backend through the LLM API "
                 "(tensorrt_llm.LLM), in trtpipe's decoupled Triton Python model")

    @property
    def stages(self) -> tuple[Stage, ...]:
        return STAGES

    # --- machine ------------------------------------------------------------------------------------------
    def preflight_build(self, config: BuildConfig) -> None:
        check_local_source(config)  # a local checkpoint's own format is known now: refused before the machine checks
        # Refuse before any work: no TensorRT-LLM >= TOOLCHAIN["min_tensorrt_llm"] or no GPU, then too few GPUs, the
        # wrong architecture for the format (FP8 needs SM 89+, NVFP4 SM 100+), or too little memory for the weights and KV.
        preflight(config, check_llm_api_toolchain(config))

    def describe_preflight(self, config: BuildConfig) -> list[str]:
        need = ["nvidia-smi lists a GPU", f"tensorrt_llm >= {TOOLCHAIN['min_tensorrt_llm']} importable "
                                          f"(written for {TOOLCHAIN['tensorrt_llm']})"]
        if config.quantization:
            need += [f"nvidia-modelopt {TOOLCHAIN['modelopt']}", LlmApiTools().hf_ptq_script]
        world = config.parallelism.world_size
        return ["toolchain: " + "; ".join(need),
                f"machine: {world} GPU(s) of one architecture, with memory for the weights and one full sequence of "
                "KV (trt/preflight.py preflight)",
                f"otherwise the build stops here and names {IMAGE}"]

    def check_serving_machine(self, manifest, machine=None) -> list[str]:
        config = BuildConfig.model_validate(manifest.config)
        # Serving loads the published checkpoint: ModelOpt is a build-time need only.
        machine = check_llm_api_toolchain(config.model_copy(update={"quantization": None}), machine=machine)
        configure = next((s.meta for s in manifest.stages if s.stage == "configure"), {})
        return [f"TensorRT-LLM {machine.tensorrt_llm or '(version unknown)'}", *preflight(config, machine),
                *check_prequantized_machine(config, configure.get("prequantized"), machine)]

    # --- the model repository -----------------------------------------------------------------------------
    def serving_spec(self, config: BuildConfig):
        # Top log-probs: SamplingParams(logprobs=k) gives the k most likely tokens per generated token
        # (python_models/llm_api.py; the adapter refuses more than MAX_TOP_LOG_PROBS). TensorRT-LLM's speculative
        # samplers return the sampled token's log-prob only, so an engine that speculates advertises none.
        # Prompt log-probs stay off: in 1.2.x prompt_logprobs=k returns each prompt position's top k only, without
        # the prompt token's own log-prob unless it is among them, and echo needs it for every token; and they come
        # from context logits, which a prefix served from the KV-cache reuse does not have. The adapter passes
        # return_prompt_log_probs through and fails a request whose prompt tokens it cannot all score.
        spec = dataclasses.replace(super().serving_spec(config),
                                   max_top_log_probs=0 if config.speculation else MAX_TOP_LOG_PROBS)
        if config.speculation is None:
            return spec
        # The engine speculates: the frontend must not (no draft model to call, no draft length to use).
        return dataclasses.replace(spec, draft_model_name=None, max_draft_len=0,
                                   engine_speculation=DECODING_TYPE[config.speculation.method])

    def engine_version_files(self) -> dict[str, Path]:
        return {"model.py": ADAPTER}

    def describe_engine_files(self) -> list[str]:
        return ["model.py (the Triton model driving tensorrt_llm.LLM, model_repo/llm_api_engine/1/model.py)"]

    def model_configs(self, repo: Path, spec, live: int) -> dict:
        name = spec.engine_model
        # The same tensors, decoupled, as the reference engine's model; the instance runs where TensorRT-LLM
        # puts it (KIND_MODEL: the LLM API places its ranks on the GPUs itself).
        cfg = reference_engine_config(spec, name, live)
        del cfg.instance_group[:]
        cfg.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_MODEL)
        for key in list(cfg.parameters):
            if key != "engine_dir":
                del cfg.parameters[key]
        return {name: cfg}

    # --- serving and plans ------------------------------------------------------------------------------
    def describe_launch(self, config: BuildConfig, repo: Path) -> list[str]:
        world = config.parallelism.world_size
        ranks = "it runs on one GPU" if world == 1 else f"the LLM API starts its {world} ranks (tp*pp) itself"
        return [f"serve (not run by build): `trtpipe serve` starts one plain tritonserver on {repo} (no mpirun, no "
                f"tensorrtllm backend); {engine_model_name(config.name)}'s Python model creates tensorrt_llm.LLM at "
                f"load and {ranks}"]

    # --- plans --------------------------------------------------------------------------------------------
    def describe_speculation(self, config: BuildConfig) -> str:
        s = config.speculation
        source = f", draft {s.draft} inside the engine" if s.draft else ""
        return (f"{s.method} by the engine itself (speculative_config decoding_type {DECODING_TYPE[s.method]}), up "
                f"to {s.max_draft_len} draft tokens per step{source}; the frontend runs no draft loop")

    def plan_commands(self, config: BuildConfig, draft: BuildConfig | None, world_size: int) -> list[str]:
        tag = config.name.upper().replace("-", "_").replace(".", "_")
        lines = ["", f"What `trtpipe build` writes and the Triton model loads, inside `{IMAGE}` (no engine build):", ""]
        if config.quantization:
            cmd = quantize_command(config, Path(f"{tag}_HF_DIR"), Path(f"{tag}_QUANTIZED_DIR"),
                                   LlmApiTools(python="python3"))
            lines += ["```sh", cmd.shell(), "```", ""]
        lines += [f"`{OPTIONS_FILE}`, beside `{CHECKPOINT_DIR}/` in the version's engine directory:", "", "```yaml",
                  llm_args_yaml(config, has_draft=draft is not None).rstrip(), "```"]
        return lines


BACKEND = TensorrtLlmPytorchBackend()
