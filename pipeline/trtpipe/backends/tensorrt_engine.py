"""`backend: trt-engine`: TensorRT engines built with TensorRT-LLM's own tools, served by Triton's C++
`tensorrtllm` backend. Pinned to the TensorRT-LLM of the NGC image in the toolchain table (trt/toolchain.py, via
trt/recipes.py TOOLCHAIN); upstream
removes this path after 1.3.0rc20, so trtpipe owns its recipes and templates.

Stages: fetch -> convert (convert_checkpoint.py, or ModelOpt's quantize.py for calibrated formats, which
quantizes too) -> quantize (a pass-through here) -> compile (trtllm-build, then the engine directory is
checked against the config). Publishes the model set `<model>-{engine,preprocessing,postprocessing,ensemble}`
(repo/model_set.py, repo/tensorrtllm_configs.py); a draft is its own build and its own model set.
"""

from __future__ import annotations

import functools
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtpipe.backend_registry import check_prequantized
from trtpipe.backends.base import Backend, StagedDir
from trtpipe.config import BuildConfig
from trtpipe.repo import model_set
from trtpipe.repo.tensorrtllm_configs import RepoNames, model_set_configs
from trtpipe.serve.process.trt_launch import (device_ids, engine_gpu_ids, launch_mode, triton_launch_argv,
                                              triton_launch_env)
from trtpipe.spec import engine_model_name
from trtpipe.stages import fetch
from trtpipe.stages.base import Inputs, Stage, link_or_copy_tree
from trtpipe.stages.steps import InProcess, RunCommand, Step, Verify
from trtpipe.trt.engine_dir import KV_QUANT_ALGO, QUANT_ALGO, expected_limits, verify_engine_dir
from trtpipe.trt.guided_decoding import TOKENIZER_INFO_FILE, TOKENIZER_INFO_KEYS, check_tokenizer_info, \
    tokenizer_info_command
from trtpipe.trt.preflight import build_fingerprint, detect_machine, preflight, preflight_build
from trtpipe.trt.prequantized import (check_local_source, describe_check, engine_quant_algo, fetched, read_checked,
                                      record)
from trtpipe.trt.recipes import IMAGE, TOOLCHAIN, Command, TrtTools, build_commands, checkpoint_command, uses_modelopt

_PORTS = (8000, 8001, 8002)


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> dict[str, Any]:
    """An engine is specific to the GPU architecture and the exact TensorRT(-LLM) it was built with."""
    return build_fingerprint(detect_machine())


def _convert_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"fetch": inputs["fetch"].key, "backend": config.backend, "dtype": config.dtype, "toolchain": TOOLCHAIN,
            "tp": config.parallelism.tp, "pp": config.parallelism.pp,
            "quantization": config.quantization.model_dump() if config.quantization else None}


def _checkpoint_quant(config: BuildConfig, inputs: Inputs):
    """(the fetched checkpoint's own quantization, the table row serving it); (None, None) before fetch has run
    (a dry run). Refuses a format trt-engine cannot convert as it is (backend_registry.check_prequantized)."""
    hf_dir = inputs["fetch"].path
    return read_checked(config, hf_dir) if fetched(hf_dir) else (None, None)


def _convert_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    quant, row = _checkpoint_quant(config, inputs)
    cmd = checkpoint_command(config, inputs["fetch"].path, out_dir, TrtTools(), prequant=quant)
    return [Verify((describe_check(config),), lambda: record(config, quant, row)),
            RunCommand(cmd, out_dir.parent / f"{out_dir.name}.log", stage="convert", meta_key="command")]


def _compile_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    return {"quantize": inputs["quantize"].key, "backend": config.backend, "engine": config.engine.model_dump(),
            "toolchain": TOOLCHAIN, "tp": config.parallelism.tp, "pp": config.parallelism.pp,
            "max_draft_len": config.speculation.max_draft_len if config.speculation else 0,
            "machine": machine_fingerprint()}


def _verify_lines(config: BuildConfig, checkpoint_algo: str | None = None) -> tuple[str, ...]:
    limits = expected_limits(config)
    q = config.quantization
    ranks = " ".join(f"rank{r}.engine" for r in range(config.parallelism.world_size))
    return (f"verify (trt/engine_dir.py): <tmp> holds config.json and exactly {ranks} (none empty); "
            f"mapping tp={config.parallelism.tp} pp={config.parallelism.pp}",
            "  build_config " + " ".join(f"{k}={v}" for k, v in limits.items() if k != "max_num_tokens")
            + f" max_num_tokens>={limits['max_num_tokens']}; paged KV cache; paged context FMHA on"
            + ("; speculative_decoding_mode draft_tokens_external" if limits["max_draft_len"] else ""),
            f"  quant_algo {checkpoint_algo or (QUANT_ALGO.get(q.format) if q else None)}, kv_cache_quant_algo "
            f"{KV_QUANT_ALGO.get(q.kv_cache_dtype) if q and q.kv_cache_dtype else None}")


def _compile_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    commands = build_commands(config, inputs["quantize"].path, out_dir, TrtTools())
    steps: list[Step] = [RunCommand(cmd, out_dir.parent / f"{out_dir.name}.{i}.log", stage="compile")
                         for i, cmd in enumerate(commands)]
    algo = engine_quant_algo(_checkpoint_quant(config, inputs)[0])
    steps.append(Verify(_verify_lines(config, algo),
                        lambda: {"engine_limits": verify_engine_dir(out_dir, config, checkpoint_quant_algo=algo),
                                 "build_fingerprint": machine_fingerprint()}))
    return steps


def _tokenizer_info_key(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    # The engine is only linked: a change of guided decoding never rebuilds it.
    return {"compile": inputs["compile"].key, "fetch": inputs["fetch"].key, "toolchain": TOOLCHAIN,
            "guided_decoding": BACKEND.guided_decoding(config)}


def _tokenizer_info_plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    engine, hf_dir = inputs["compile"].path, inputs["fetch"].path
    cmd = tokenizer_info_command(config, hf_dir, out_dir, TrtTools())
    return [InProcess(f"in-process: link the files of {engine} (the engine) into <tmp>",
                      lambda: link_or_copy_tree(engine, out_dir)),
            RunCommand(cmd, out_dir.parent / f"{out_dir.name}.log", stage="tokenizer_info", meta_key="command"),
            Verify((f"verify: <tmp>/{TOKENIZER_INFO_FILE} holds {', '.join(TOKENIZER_INFO_KEYS)} (what the tensorrtllm "
                    "backend reads at load)",
                    f"published as engine/{TOKENIZER_INFO_FILE}; the engine config's xgrammar_tokenizer_info_path "
                    "names it by its absolute path in the version"),
                   lambda: check_tokenizer_info(out_dir / TOKENIZER_INFO_FILE))]


STAGES = (
    fetch.STAGE,
    # v2: a checkpoint that came quantized is checked, and an AutoAWQ/GPTQ one converted with the int4_gptq flags.
    Stage("convert", 2, _convert_key, _convert_plan),
    # TensorRT-LLM quantizes inside the checkpoint tool (convert_checkpoint.py's weight-only flags, or quantize.py).
    Stage("quantize", 1, lambda c, i: {}, lambda c, i, o: [],
          passthrough=lambda c: "quantized by convert" if c.quantization else "no quantization"),
    Stage("compile", 1, _compile_key, _compile_plan),
    # The engine plus the xgrammar tokenizer info its guided decoding loads (trt/guided_decoding.py).
    Stage("tokenizer_info", 1, _tokenizer_info_key, _tokenizer_info_plan,
          passthrough=lambda c: None if BACKEND.guided_decoding(c) else "serving.guided_decoding: none"),
)


class TensorrtEngineBackend(Backend):
    name = "trt-engine"
    framework = (f"TensorRT-LLM {TOOLCHAIN['tensorrt_llm']} engine, Triton `tensorrtllm` backend (in-flight fused "
                 "batching, paged KV cache)")

    @property
    def stages(self) -> tuple[Stage, ...]:
        return STAGES

    # --- machine ------------------------------------------------------------------------------------------
    def preflight_build(self, config: BuildConfig) -> None:
        check_local_source(config)  # a local checkpoint's own format is known now: refused before the machine checks
        preflight_build(config)

    def describe_preflight(self, config: BuildConfig) -> list[str]:
        tools = TrtTools()
        need = ["nvidia-smi lists a GPU", f"tensorrt_llm {TOOLCHAIN['tensorrt_llm']} importable", tools.trtllm_build,
                tools.convert_script, tools.quantize_script]
        if uses_modelopt(config):
            need.append(f"nvidia-modelopt {TOOLCHAIN['modelopt']}")
        return ["toolchain: " + "; ".join(need), f"otherwise the build stops here and names {IMAGE}"]

    def check_serving_machine(self, manifest, machine=None) -> list[str]:
        config = BuildConfig.model_validate(manifest.config)
        compile_meta = next((s.meta for s in manifest.stages if s.stage == "compile"), {})
        built = compile_meta.get("build_fingerprint") or {
            "tensorrt_llm": (compile_meta.get("engine_limits") or {}).get("tensorrt_llm_version")}
        return preflight(config, machine or detect_machine(), built=built)

    # --- the model repository -----------------------------------------------------------------------------
    def check_can_publish(self, repo: Path, spec) -> None:
        model_set.check_can_publish(repo, spec)

    def companion_names(self, spec) -> list[str]:
        return model_set.companion_names(spec)

    def stage_companions(self, repo: Path, spec, version: int, tokenizer_dir: Path) -> list[Path]:
        return model_set.stage_companions(repo, spec, version, tokenizer_dir)

    def describe_companions(self, repo: Path, spec, version: int) -> list[StagedDir]:
        sources = model_set.upstream_sources()
        staged = []
        for name in self.companion_names(spec):
            kind = name[len(spec.model_name) + 1:]
            here = "" if kind not in sources or sources[kind].is_file() else ", which is in the image, not here"
            files = [f"model.py (copied from {sources[kind]}{here})", "tokenizer/ (a copy of the engine's)"] \
                if kind in sources else ["(empty: the ensemble runs no code)"]
            staged.append(StagedDir(repo / name, files))
        return staged

    def model_configs(self, repo: Path, spec, live: int) -> dict:
        # The tensorrtllm backend opens engine_dir exactly as given: an absolute path into the version. Every
        # engine names its GPUs (serve/process/trt_launch.py engine_gpu_ids), which orchestrator mode requires.
        return model_set_configs(spec, repo_dir=repo, live_version=live, gpu_device_ids=engine_gpu_ids(spec.world_size))

    # --- serving and plans --------------------------------------------------------------------------------
    def describe_launch(self, config: BuildConfig, repo: Path) -> list[str]:
        @dataclass(frozen=True)
        class Ports:
            http: int = _PORTS[0]
            grpc: int = _PORTS[1]
            metrics: int = _PORTS[2]

        engines = [RepoNames(config.name).engine] + ([RepoNames(config.speculation.draft).engine]
                                                      if config.speculation else [])
        world = config.parallelism.world_size
        mode = launch_mode(world, len(engines))
        tools = TrtTools()
        argv = triton_launch_argv(repo, world, Ports(), engine_models=engines, tritonserver=tools.tritonserver,
                                  mpirun=tools.mpirun, gpu_count=world if mode == "orchestrator" else None)
        env = " ".join(f"{k}={v}" for k, v in sorted(triton_launch_env(world, len(engines)).items()))
        return [f"serve (not run by build): Triton for this set, {mode} mode (serve/process/trt_launch.py), default ports",
                "   $ " + (env + " " if env else "") + shlex.join(argv)]

    def plan_commands(self, config: BuildConfig, draft: BuildConfig | None, world_size: int) -> list[str]:
        class _Ports:
            http, grpc, metrics = _PORTS

        tools = TrtTools(python="python3", examples_dir="/app/examples", trtllm_build="trtllm-build",
                         tritonserver="/opt/tritonserver/bin/tritonserver", mpirun="mpirun")
        cmds: list[Command] = []
        for cfg, role in ((draft, "draft"), (config, "target")):
            if cfg is None:
                continue
            tag = cfg.name.upper().replace("-", "_").replace(".", "_")
            cmds.append(checkpoint_command(cfg, Path(f"{tag}_HF_DIR"), Path(f"{tag}_CKPT_DIR"), tools))
            cmds += build_commands(cfg, Path(f"{tag}_CKPT_DIR"), Path(f"{tag}_ENGINE_DIR"), tools,
                                   draft=role == "draft")
            if self.guided_decoding(cfg):
                cmds.append(tokenizer_info_command(cfg, Path(f"{tag}_HF_DIR"), Path(f"{tag}_ENGINE_DIR"), tools))
        engines = [engine_model_name(config.name)] + ([engine_model_name(draft.name)] if draft else [])
        argv = triton_launch_argv("/models", world_size, _Ports(), engine_models=engines, gpu_count=world_size)
        env = triton_launch_env(world_size, len(engines))
        lines = ["", f"What `trtpipe build` and `trtpipe serve` run inside `{IMAGE}`:", "", "```sh"]
        lines += [cmd.shell() for cmd in cmds]
        lines.append(Command(argv=argv, env=env).shell())
        lines.append("```")
        if draft:
            lines.append(f"\nOrchestrator mode: both engines are placed by `gpu_device_ids` (target "
                         f"{device_ids(world_size)}, draft {device_ids(draft.parallelism.world_size)}).")
        return lines


BACKEND = TensorrtEngineBackend()
