"""What `backend: trtllm-pytorch` runs and writes: the ModelOpt command that makes a quantized Hugging Face
checkpoint, and the TensorRT-LLM LLM API arguments as the YAML that `trtllm-serve --extra_llm_api_options` reads;
and, at load, how the Triton model turns that YAML into `LLM(**args)`: as trtllm-serve does, through the installed
TensorRT-LLM's own loader (`update_llm_args_with_extra_dict`), so the installed version decides the shapes.

Nothing here runs a tool or imports TensorRT-LLM (the loader is given the module). Every key written is a field of
TensorRT-LLM's `TorchLlmArgs` in the names of the version it is written for (trt/llm_api_dialects.py), listed in
LLM_ARGS_KEYS so a test pins that nothing else is written; RECORD_FILE beside the YAML says which version that
was, and the loader refuses a TensorRT-LLM that spells the names differently. Defaults we rely on are written
explicitly anyway, so a changed default upstream cannot silently change a deployment.

Paths in the YAML (the speculative_config draft path) are relative to the directory holding it: the published
version's engine/ directory, which holds `checkpoint/` (the model), `draft/` (a draft model or an EAGLE-3 head)
and `llm_api_options.yaml`. The loader resolves them against that directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trtpipe.backend_registry import capabilities, guided_decoding
from trtpipe.config import BuildConfig
from trtpipe.errors import ConfigError, TrtpipeError
from trtpipe.stages.steps import Command
from trtpipe.trt.llm_api_dialects import DEFAULT_TOKENS_PER_BLOCK, OLDEST, Dialect, dialect_for
from trtpipe.trt.toolchain import PINNED

# The toolchain every trtllm-pytorch artifact is written for: the pinned row of the one table (trt/toolchain.py),
# which both GPU backends share. The LLM API reads the arguments at load time, so the version matters at serve
# time: the YAML uses the pinned version's names (trt/llm_api_dialects.py) and the record beside it says which.
TOOLCHAIN = {
    "image": PINNED.image,
    "tensorrt_llm": PINNED.tensorrt_llm,
    "min_tensorrt_llm": OLDEST,
    # ModelOpt's unified Hugging Face export (export_hf_checkpoint), which TensorRT-LLM's PyTorch backend loads;
    # flags as read in its examples/llm_ptq/hf_ptq.py argparse. trtpipe's constraint, not from the matrix: below
    # 0.49 as well, since docker/Dockerfile holds ModelOpt < 0.49 for the engine path in the same image.
    "modelopt": ">=0.35," + PINNED.modelopt,
}
WRITTEN_FOR = PINNED.tensorrt_llm
IMAGE = TOOLCHAIN["image"]
OPTIONS_FILE = "llm_api_options.yaml"
# Beside it: which TensorRT-LLM (and so which names) the YAML was written for; read before the YAML at load.
RECORD_FILE = "llm_api_options.trtpipe.json"
CHECKPOINT_DIR = "checkpoint"
DRAFT_DIR = "draft"

# quantization.format -> ModelOpt's --qformat; kv_cache_dtype -> --kv_cache_qformat.
MODELOPT_QFORMAT = {"fp8": "fp8", "nvfp4": "nvfp4", "int4_awq": "int4_awq"}
MODELOPT_KV_QFORMAT = {"fp8": "fp8"}
# NVFP4 tensor cores: Blackwell (compute capability 10.0 and up).
NVFP4_MIN_COMPUTE_CAPABILITY = (10, 0)
FP8_MIN_COMPUTE_CAPABILITY = (8, 9)

SCHEDULER_POLICY = {"guaranteed_no_evict": "GUARANTEED_NO_EVICT", "max_utilization": "MAX_UTILIZATION"}
# speculation.method -> speculative_config.decoding_type in the names of the pinned version.
DECODING_TYPE = dialect_for(WRITTEN_FOR).decoding_type

# Every key trtpipe writes, per section: TorchLlmArgs fields and those of its nested configs.
LLM_ARGS_KEYS = {
    "": {"tensor_parallel_size", "pipeline_parallel_size", "moe_expert_parallel_size", "dtype", "max_batch_size",
         "max_num_tokens", "max_seq_len", "max_input_len", "max_beam_width", "enable_chunked_prefill",
         "skip_tokenizer_init", "kv_cache_config", "scheduler_config", "cuda_graph_config", "speculative_config",
         "guided_decoding_backend"},
    "kv_cache_config": {"enable_block_reuse", "free_gpu_memory_fraction", "dtype", "max_tokens", "tokens_per_block"},
    "scheduler_config": {"capacity_scheduler_policy"},
    "cuda_graph_config": {"max_batch_size", "enable_padding"},
    "speculative_config": {"decoding_type", "max_draft_len", "speculative_model_dir", "speculative_model",
                           "max_matching_ngram_size", "eagle3_one_model"},
}


def _env_default(var: str, default: str):
    return field(default_factory=lambda: os.environ.get(var) or default)


@dataclass(frozen=True)
class LlmApiTools:
    """Where the tools live. `LlmApiTools()` reads each from the environment, for other installs."""

    python: str = _env_default("TRTPIPE_PYTHON", "python3")
    # ModelOpt's examples (github.com/NVIDIA/TensorRT-Model-Optimizer, examples/llm_ptq): not in the image.
    modelopt_examples: str = _env_default("TRTPIPE_MODELOPT_EXAMPLES", "/opt/modelopt/examples")

    @property
    def hf_ptq_script(self) -> str:
        return f"{self.modelopt_examples}/llm_ptq/hf_ptq.py"


def quantize_command(config: BuildConfig, hf_dir: Path, out_dir: Path, tools: LlmApiTools) -> Command:
    """HF checkpoint -> calibrated, quantized HF checkpoint (safetensors + hf_quant_config.json) via ModelOpt.

    NOTE: hf_ptq.py has no seed flag (it seeds calibration with its constant RAND_SEED), so it runs through
    trt/seeded_ptq.py, which sets that constant to quantization.calibration.seed."""
    q = config.quantization
    argv = [tools.python, "-m", "trtpipe.trt.seeded_ptq", "--seed", str(q.calibration.seed), tools.hf_ptq_script,
            "--pyt_ckpt_path", str(hf_dir), "--export_path", str(out_dir), "--qformat", MODELOPT_QFORMAT[q.format]]
    # NOTE: hf_ptq.py quantizes the KV cache to fp8 unless told otherwise, so "none" is passed explicitly.
    argv += ["--kv_cache_qformat", MODELOPT_KV_QFORMAT[q.kv_cache_dtype] if q.kv_cache_dtype else "none"]
    argv += ["--dataset", q.calibration.dataset, "--calib_size", str(q.calibration.size)]
    if config.source.allow_custom_code:
        argv.append("--trust_remote_code")
    return Command(argv=argv, produces=str(out_dir),
                   description=f"calibrate and quantize {config.name} with ModelOpt into a Hugging Face checkpoint "
                               f"({q.format}, kv {q.kv_cache_dtype or config.dtype}, {q.calibration.size} samples of "
                               f"{q.calibration.dataset}, seed {q.calibration.seed})")


def _kv_cache_config(config: BuildConfig, dialect: Dialect, checkpoint_kv_cache: str | None) -> dict[str, Any]:
    e, s, q = config.engine, config.serving, config.quantization
    # "auto" takes the checkpoint's: an FP8-KV ModelOpt export says fp8 itself. A checkpoint that came quantized with
    # an FP8 KV cache gets it written out (KvCacheConfig(dtype='fp8'), the LLM API docs' spelling), like every
    # default trtpipe relies on.
    kv: dict[str, Any] = {"enable_block_reuse": s.enable_kv_cache_reuse,
                          "free_gpu_memory_fraction": s.kv_cache_free_gpu_mem_fraction,
                          "dtype": q.kv_cache_dtype if q and q.kv_cache_dtype else checkpoint_kv_cache or "auto"}
    if e.max_tokens_in_paged_kv_cache is not None:
        kv["max_tokens"] = e.max_tokens_in_paged_kv_cache
    if dialect.kv_tokens_per_block:
        kv["tokens_per_block"] = e.tokens_per_block
    elif e.tokens_per_block != DEFAULT_TOKENS_PER_BLOCK:
        raise ConfigError(f"engine.tokens_per_block {e.tokens_per_block}: TensorRT-LLM {dialect.since}.x's "
                          f"KvCacheConfig has no tokens_per_block, so its PyTorch backend keeps "
                          f"{DEFAULT_TOKENS_PER_BLOCK}",
                          where=f"{config.name}: engine.tokens_per_block",
                          fix=f"use {DEFAULT_TOKENS_PER_BLOCK} with {PINNED.image}, or an image with TensorRT-LLM >= 1.3")
    return kv


def _speculative_config(config: BuildConfig, dialect: Dialect, has_draft: bool) -> dict[str, Any]:
    spec = config.speculation
    sc: dict[str, Any] = {"decoding_type": dialect.decoding_type[spec.method], "max_draft_len": spec.max_draft_len}
    sc.update(dialect.extra_fields.get(spec.method, {}))
    if spec.method == "ngram":
        sc["max_matching_ngram_size"] = spec.max_matching_ngram_size
    elif has_draft:
        sc[dialect.draft_path_key] = DRAFT_DIR  # relative to this file's directory
    return sc


def llm_args(config: BuildConfig, *, has_draft: bool, written_for: str = WRITTEN_FOR,
             checkpoint_kv_cache: str | None = None) -> dict[str, Any]:
    """The LLM API arguments for `config` as the YAML mapping, in the names of TensorRT-LLM `written_for` (model
    and tokenizer are given at load). `checkpoint_kv_cache`: the KV-cache dtype a checkpoint that came quantized asks
    for (trt/prequantized.py kv_cache_dtype). Nothing here quantizes: the LLM API reads the checkpoint's own
    quantization from its files."""
    e, s, p, api = config.engine, config.serving, config.parallelism, config.llm_api
    dialect = dialect_for(written_for)
    guided = guided_decoding(capabilities(config.backend), config)
    args: dict[str, Any] = {
        "tensor_parallel_size": p.tp,
        "pipeline_parallel_size": p.pp,
        "dtype": config.dtype,
        "max_batch_size": e.max_batch_size,
        "max_num_tokens": e.max_num_tokens,
        "max_seq_len": e.max_seq_len,
        "max_input_len": e.max_input_len,
        "max_beam_width": 1,
        "enable_chunked_prefill": s.enable_chunked_context,
        # trtpipe's frontend tokenizes and detokenizes; the engine sees token ids only (SamplingParams detokenize
        # false). NOTE: but guided decoding compiles grammars against the tokenizer: create_py_executor asserts one
        # when guided_decoding_backend is set, and LLM loads none under skip_tokenizer_init, so it is loaded then.
        "skip_tokenizer_init": not guided,
        "kv_cache_config": _kv_cache_config(config, dialect, checkpoint_kv_cache),
        "scheduler_config": {"capacity_scheduler_policy": SCHEDULER_POLICY[s.batch_scheduler_policy]},
    }
    if p.ep is not None:
        args["moe_expert_parallel_size"] = p.ep
    if api.cuda_graphs:
        args["cuda_graph_config"] = {"max_batch_size": api.cuda_graph_max_batch_size or e.max_batch_size,
                                     "enable_padding": api.cuda_graph_padding}
    else:
        args["cuda_graph_config"] = None  # eager mode
    if config.speculation is not None:
        args["speculative_config"] = _speculative_config(config, dialect, has_draft)
    if guided:
        # The engine then enforces each request's GuidedDecodingParams (python_models/llm_api.py
        # guided_decoding_kwargs).
        args["guided_decoding_backend"] = guided
    return args


def llm_args_yaml(config: BuildConfig, *, has_draft: bool, written_for: str = WRITTEN_FOR,
                  checkpoint_kv_cache: str | None = None) -> str:
    header = (f"# TensorRT-LLM LLM API arguments for {config.name} (TorchLlmArgs), in the names of TensorRT-LLM "
              f"{written_for} ({RECORD_FILE} records it).\n"
              f"# Paths are relative to this directory. By hand: cd here && trtllm-serve {CHECKPOINT_DIR} "
              f"--extra_llm_api_options {OPTIONS_FILE}\n")
    args = llm_args(config, has_draft=has_draft, written_for=written_for, checkpoint_kv_cache=checkpoint_kv_cache)
    return header + yaml.safe_dump(args, sort_keys=False)


def llm_args_record(written_for: str = WRITTEN_FOR) -> str:
    """RECORD_FILE: the TensorRT-LLM version (and so the dialect) the YAML beside it was written for."""
    import json

    return json.dumps({"tensorrt_llm": written_for, "dialect": dialect_for(written_for).name,
                       "image": PINNED.image}, indent=2) + "\n"


class LlmArgsMismatch(TrtpipeError):
    """The installed TensorRT-LLM spells the LLM API arguments differently from the version they were written for."""


def read_llm_args(engine_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the YAML mapping with its relative draft path made absolute, the record) from a published engine dir."""
    import json

    record_path = engine_dir / RECORD_FILE
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    args = yaml.safe_load((engine_dir / OPTIONS_FILE).read_text()) or {}
    spec = args.get("speculative_config") or {}
    for key in ("speculative_model_dir", "speculative_model"):
        if spec.get(key):
            spec[key] = str(engine_dir / spec[key])
    return args, record


def check_written_for(record: dict[str, Any], installed: str, engine_dir: Path) -> None:
    """Refuse before anything loads when the installed TensorRT-LLM reads other names than the YAML uses."""
    written = record.get("tensorrt_llm")
    if written is None:
        raise LlmArgsMismatch(f"{engine_dir / RECORD_FILE} is missing: the LLM API arguments do not say which "
                              "TensorRT-LLM they were written for", where=str(engine_dir),
                              fix="rebuild the model with this trtpipe: trtpipe build NAME --force configure")
    if dialect_for(written).name != dialect_for(installed).name:
        raise LlmArgsMismatch(f"the LLM API arguments were written for TensorRT-LLM {written} (names of {dialect_for(written).name}.x); "
                              f"this is TensorRT-LLM {installed} (names of {dialect_for(installed).name}.x)",
                              where=str(engine_dir / OPTIONS_FILE),
                              fix=f"serve it in {record.get('image', PINNED.image)}, or rebuild it in this image "
                                  "(trtpipe build NAME --force configure)")


def load_llm_args(tensorrt_llm: Any, engine_dir: Path) -> dict[str, Any]:
    """The keyword arguments for `tensorrt_llm.LLM(**...)` from a published engine directory, made as trtllm-serve
    makes them: the model path, then the YAML through the installed TensorRT-LLM's own
    `tensorrt_llm.llmapi.llm_args.update_llm_args_with_extra_dict` (which turns speculative_config into its config
    class by decoding_type). `tensorrt_llm` is the module (or a test's stand-in)."""
    import importlib

    args, record = read_llm_args(engine_dir)
    check_written_for(record, tensorrt_llm.__version__, engine_dir)
    loader = importlib.import_module(f"{tensorrt_llm.__name__}.llmapi.llm_args")
    base = {"model": str(engine_dir / CHECKPOINT_DIR)}
    return loader.update_llm_args_with_extra_dict(base, args, str(engine_dir / OPTIONS_FILE))
