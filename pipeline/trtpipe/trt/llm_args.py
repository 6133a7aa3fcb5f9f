"""What `backend: trtllm-pytorch` runs and writes: the ModelOpt command that makes a quantized Hugging Face
checkpoint, and the TensorRT-LLM LLM API arguments as the YAML that `trtllm-serve --extra_llm_api_options`
(`--config` in newer releases) and `LLM(**yaml)` accept.

Nothing here runs a tool or imports TensorRT-LLM. Every key written is a field of TensorRT-LLM's
`TorchLlmArgs` (tensorrt_llm/llmapi/llm_args.py; reference at nvidia.github.io/TensorRT-LLM llm-api
TorchLlmArgs, KvCacheConfig, CudaGraphConfig, SchedulerConfig, Eagle3DecodingConfig,
DraftTargetDecodingConfig, NGramDecodingConfig), read there and listed in LLM_ARGS_KEYS so a test pins
that nothing else is written. Defaults we rely on are written explicitly anyway, so a changed default
upstream cannot silently change a deployment.

Paths in the YAML (speculative_config.speculative_model_dir) are relative to the directory holding it: the
published version's engine/ directory, which holds `checkpoint/` (the model), `draft/` (a draft model or an
EAGLE-3 head) and `llm_api_options.yaml`. The Triton model resolves them against that directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from trtpipe.backend_registry import capabilities, guided_decoding
from trtpipe.config import BuildConfig
from trtpipe.stages.steps import Command

# The toolchain every trtllm-pytorch artifact is written for. The LLM API reads the arguments at load time,
# so the version matters at serve time: preflight refuses < MIN_TENSORRT_LLM and records the one it found.
TOOLCHAIN = {
    # The newest Triton image with TensorRT-LLM (its Dockerfile builds release/1.2.1; trtllm-facts.md §0). The
    # PyTorch backend is TensorRT-LLM's default in 1.x, so the same image serves both GPU backends.
    "image": "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3",
    "tensorrt_llm": "1.2.1",
    "min_tensorrt_llm": "1.2",
    # ModelOpt's unified Hugging Face export (export_hf_checkpoint), which TensorRT-LLM's PyTorch backend loads;
    # flags as read in its examples/llm_ptq/hf_ptq.py argparse.
    # Below 0.49 as well: docker/Dockerfile holds ModelOpt < 0.49 for the engine path in the same image.
    "modelopt": ">=0.35,<0.49",
}
IMAGE = TOOLCHAIN["image"]
OPTIONS_FILE = "llm_api_options.yaml"
CHECKPOINT_DIR = "checkpoint"
DRAFT_DIR = "draft"

# quantization.format -> ModelOpt's --qformat; kv_cache_dtype -> --kv_cache_qformat.
MODELOPT_QFORMAT = {"fp8": "fp8", "nvfp4": "nvfp4", "int4_awq": "int4_awq"}
MODELOPT_KV_QFORMAT = {"fp8": "fp8"}
# NVFP4 tensor cores: Blackwell (compute capability 10.0 and up).
NVFP4_MIN_COMPUTE_CAPABILITY = (10, 0)
FP8_MIN_COMPUTE_CAPABILITY = (8, 9)

SCHEDULER_POLICY = {"guaranteed_no_evict": "GUARANTEED_NO_EVICT", "max_utilization": "MAX_UTILIZATION"}
# speculation.method -> speculative_config.decoding_type (the Literal each DecodingConfig class declares).
DECODING_TYPE = {"eagle3": "Eagle3", "draft-target": "Draft_Target", "ngram": "NGram"}

# Every key trtpipe writes, per section: TorchLlmArgs fields and those of its nested configs.
LLM_ARGS_KEYS = {
    "": {"tensor_parallel_size", "pipeline_parallel_size", "moe_expert_parallel_size", "dtype", "max_batch_size",
         "max_num_tokens", "max_seq_len", "max_input_len", "max_beam_width", "enable_chunked_prefill",
         "skip_tokenizer_init", "kv_cache_config", "scheduler_config", "cuda_graph_config", "speculative_config",
         "guided_decoding_backend"},
    "kv_cache_config": {"enable_block_reuse", "free_gpu_memory_fraction", "dtype", "max_tokens"},
    "scheduler_config": {"capacity_scheduler_policy"},
    "cuda_graph_config": {"max_batch_size", "enable_padding"},
    "speculative_config": {"decoding_type", "max_draft_len", "speculative_model_dir", "max_matching_ngram_size"},
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
    """HF checkpoint -> calibrated, quantized HF checkpoint (safetensors + hf_quant_config.json) via ModelOpt."""
    q = config.quantization
    argv = [tools.python, tools.hf_ptq_script, "--pyt_ckpt_path", str(hf_dir), "--export_path", str(out_dir),
            "--qformat", MODELOPT_QFORMAT[q.format]]
    # NOTE: hf_ptq.py quantizes the KV cache to fp8 unless told otherwise, so "none" is passed explicitly.
    argv += ["--kv_cache_qformat", MODELOPT_KV_QFORMAT[q.kv_cache_dtype] if q.kv_cache_dtype else "none"]
    argv += ["--dataset", q.calibration.dataset, "--calib_size", str(q.calibration.size)]
    if config.source.allow_custom_code:
        argv.append("--trust_remote_code")
    return Command(argv=argv, produces=str(out_dir),
                   description=f"calibrate and quantize {config.name} with ModelOpt into a Hugging Face checkpoint "
                               f"({q.format}, kv {q.kv_cache_dtype or config.dtype}, {q.calibration.size} samples of "
                               f"{q.calibration.dataset})")


def llm_args(config: BuildConfig, *, has_draft: bool) -> dict[str, Any]:
    """The LLM API arguments for `config`, as the YAML mapping (model and tokenizer are given at load)."""
    e, s, p, api = config.engine, config.serving, config.parallelism, config.llm_api
    q = config.quantization
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
        "kv_cache_config": {"enable_block_reuse": s.enable_kv_cache_reuse,
                            "free_gpu_memory_fraction": s.kv_cache_free_gpu_mem_fraction,
                            # "auto" takes the checkpoint's: an FP8-KV ModelOpt export says fp8 itself.
                            "dtype": q.kv_cache_dtype if q and q.kv_cache_dtype else "auto"},
        "scheduler_config": {"capacity_scheduler_policy": SCHEDULER_POLICY[s.batch_scheduler_policy]},
    }
    if p.ep is not None:
        args["moe_expert_parallel_size"] = p.ep
    if e.max_tokens_in_paged_kv_cache is not None:
        args["kv_cache_config"]["max_tokens"] = e.max_tokens_in_paged_kv_cache
    if api.cuda_graphs:
        args["cuda_graph_config"] = {"max_batch_size": api.cuda_graph_max_batch_size or e.max_batch_size,
                                     "enable_padding": api.cuda_graph_padding}
    else:
        args["cuda_graph_config"] = None  # eager mode
    spec = config.speculation
    if spec is not None:
        sc: dict[str, Any] = {"decoding_type": DECODING_TYPE[spec.method], "max_draft_len": spec.max_draft_len}
        if spec.method == "ngram":
            sc["max_matching_ngram_size"] = spec.max_matching_ngram_size
        elif has_draft:
            sc["speculative_model_dir"] = DRAFT_DIR  # relative to this file's directory
        args["speculative_config"] = sc
    if guided:
        # The engine then enforces each request's GuidedDecodingParams (python_models/llm_api.py
        # guided_decoding_kwargs).
        args["guided_decoding_backend"] = guided
    return args


def llm_args_yaml(config: BuildConfig, *, has_draft: bool) -> str:
    header = (f"# TensorRT-LLM LLM API arguments for {config.name} (TorchLlmArgs; TensorRT-LLM >= "
              f"{TOOLCHAIN['min_tensorrt_llm']}, written for {TOOLCHAIN['tensorrt_llm']}).\n"
              f"# Paths are relative to this directory. By hand: cd here && trtllm-serve {CHECKPOINT_DIR} "
              f"--extra_llm_api_options {OPTIONS_FILE}\n")
    return header + yaml.safe_dump(llm_args(config, has_draft=has_draft), sort_keys=False)


def resolve_llm_args(engine_dir: Path) -> dict[str, Any]:
    """The arguments for `LLM(**...)` from a published engine directory: the YAML with its relative paths made
    absolute, plus the model path (what the Triton model passes to tensorrt_llm.LLM)."""
    args = yaml.safe_load((engine_dir / OPTIONS_FILE).read_text()) or {}
    spec = args.get("speculative_config")
    if spec and spec.get("speculative_model_dir"):
        spec["speculative_model_dir"] = str(engine_dir / spec["speculative_model_dir"])
    return {"model": str(engine_dir / CHECKPOINT_DIR), **args}
