"""The GPU worker of a Dynamo deployment: Dynamo's own TensorRT-LLM worker, run on a published trtllm-pytorch version.

The choice (issue 23, item 3). A published `backend: trtllm-pytorch` version is a checkpoint (`engine/checkpoint/`,
quantized by ModelOpt or as fetched), an optional draft (`engine/draft/`) and the LLM API arguments
(`engine/llm_api_options.yaml`). Two workers could serve it to Dynamo:
  (a) Dynamo's worker, `python3 -m dynamo.trtllm`, in Dynamo's TensorRT-LLM runtime image, given the checkpoint as
      `--model` and the LLM API arguments as `--extra-engine-args`;
  (b) trtpipe's own Dynamo worker (the CPU worker room) driving `tensorrt_llm.LLM` itself.
trtpipe takes (a). Dynamo's worker already does what a GPU worker needs and a CPU machine cannot test: KV block
events from TensorRT-LLM's own event API for the KV router, disaggregated prefill/decode with TensorRT-LLM's KV
cache transceiver, multi-node ranks, metrics and request cancellation, tested by NVIDIA against the TensorRT-LLM its
image ships. What trtpipe adds is the artifact and its arguments, which is what it already builds. (b) would be a
second implementation of all that, written and kept working without a GPU to run it on. The pins of each: (a) is
Dynamo's release, its TensorRT-LLM runtime image and the TensorRT-LLM in it (trt/toolchain.py DYNAMO); (b) would
have been trtpipe's own image (the Triton image's TensorRT-LLM, trt/toolchain.py PINNED) with ai-dynamo added.

What it costs: Dynamo's image pins its own TensorRT-LLM (trt/toolchain.py DYNAMO: 1.3.0rc29 for Dynamo 1.6.1), not
the Triton image's (1.1.0) that the version's own `llm_api_options.yaml` is written for, and the two spell some
arguments differently (trt/llm_api_dialects.py: the EAGLE-3 decoding_type and draft path, tokens_per_block). So the
deployment does not reuse that file: it carries the arguments again, written by the same writer
(trt/llm_args.llm_args) for Dynamo's TensorRT-LLM, in a ConfigMap beside the graph, with the draft path made
absolute into the published version. The checkpoint itself is used as published: a Hugging Face checkpoint, which
TensorRT-LLM's PyTorch backend loads on either version (an assumption: nothing here ran TensorRT-LLM).

Disaggregated serving adds two LLM API fields: `cache_transceiver_config` on prefill and decode workers (how the
KV cache moves between them) and `disable_overlap_scheduler` on prefill workers, the keys Dynamo 1.6.1's own
profiler sets and clears when it turns its TensorRT-LLM workers into prefill, decode or aggregated ones
(dynamo/profiler/utils/config_modifiers/trtllm.py).

The flags are those of Dynamo 1.6.1's argument parser (dynamo/trtllm/backend_args.py): `--model` (1.6.1 keeps
`--model-path` only as an obsolete alias), `--served-model-name`, `--extra-engine-args`, `--disaggregation-mode`
(agg | prefill | decode; 1.6.1 has no `--disaggregation-strategy`), `--publish-kv-events`, `--kv-block-size` (must
equal the engine's tokens per block: the router hashes blocks of that size). The worker merges
`--extra-engine-args` over its own flags (dynamo/trtllm/workers/llm_worker.py), so the flags repeat the YAML's values
rather than contradict them. tests/unit/deploy/ parse these argument lists with 1.6.1's own parser when ai-dynamo is
installed. Nothing here, and no test, runs TensorRT-LLM or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from trtpipe.backend_registry import capabilities, guided_decoding
from trtpipe.config import BuildConfig
from trtpipe.spec import engine_model_name
from trtpipe.trt.llm_args import CHECKPOINT_DIR, llm_args
from trtpipe.trt.toolchain import DYNAMO

# Roles of a worker, in Dynamo 1.6.1's --disaggregation-mode names.
AGGREGATED, PREFILL, DECODE = "agg", "prefill", "decode"
ROLES = (AGGREGATED, PREFILL, DECODE)
# Where the ConfigMap with the engine arguments is mounted in worker pods (one file per role).
ENGINE_ARGS_MOUNT = "/etc/trtpipe/dynamo"
# DYN_SYSTEM_PORT: the worker's own HTTP server with /health and /live (Dynamo 1.6.1's planner examples use 9090).
SYSTEM_PORT = 9090
FRONTEND_PORT = 8000
# The KV cache transceiver TensorRT-LLM picks by default (UCX or NIXL, whichever the image has).
CACHE_TRANSCEIVER = {"backend": "DEFAULT"}


@dataclass(frozen=True)
class PublishedArtifact:
    """A published trtllm-pytorch version as the pods see it: the config it was built from, its version number,
    whether it holds a draft, and the model repository's path inside the pods."""

    config: BuildConfig
    version: int
    has_draft: bool
    pod_repo: str

    @property
    def engine_dir(self) -> str:
        return f"{self.pod_repo.rstrip('/')}/{engine_model_name(self.config.name)}/{self.version}/engine"

    @property
    def checkpoint(self) -> str:
        return f"{self.engine_dir}/{CHECKPOINT_DIR}"

    @property
    def gpus_per_worker(self) -> int:
        return self.config.parallelism.world_size


def engine_args(artifact: PublishedArtifact, role: str) -> dict[str, Any]:
    """The LLM API arguments for one worker role, in the names of Dynamo's TensorRT-LLM."""
    args = llm_args(artifact.config, has_draft=artifact.has_draft, written_for=DYNAMO.tensorrt_llm)
    spec = args.get("speculative_config") or {}
    for key in ("speculative_model_dir", "speculative_model"):
        if spec.get(key):
            # llm_args writes the draft relative to the published engine dir; the ConfigMap lives elsewhere.
            spec[key] = f"{artifact.engine_dir}/{spec[key]}"
    if role in (PREFILL, DECODE):
        args["cache_transceiver_config"] = dict(CACHE_TRANSCEIVER)
    if role == PREFILL:
        args["disable_overlap_scheduler"] = True
    return args


def engine_args_file(role: str) -> str:
    return f"{role}.yaml"


def engine_args_yaml(artifact: PublishedArtifact, role: str) -> str:
    c = artifact.config
    header = (f"# TensorRT-LLM LLM API arguments for {c.name} version {artifact.version}, {role} worker, in the names of "
              f"TensorRT-LLM {DYNAMO.tensorrt_llm} (Dynamo {DYNAMO.dynamo}'s image).\n"
              f"# Written by trtpipe deploy dynamo from the version's build config (trt/llm_args.py).\n")
    return header + yaml.safe_dump(engine_args(artifact, role), sort_keys=False)


def worker_argv(artifact: PublishedArtifact, role: str) -> list[str]:
    """`python3 -m dynamo.trtllm ...` for one worker role."""
    c = artifact.config
    e, p = c.engine, c.parallelism
    argv = ["python3", "-m", "dynamo.trtllm",
            "--model", artifact.checkpoint,
            "--served-model-name", c.name,
            "--extra-engine-args", f"{ENGINE_ARGS_MOUNT}/{engine_args_file(role)}",
            "--disaggregation-mode", role,
            "--tensor-parallel-size", str(p.tp),
            "--pipeline-parallel-size", str(p.pp)]
    if p.ep is not None:
        argv += ["--expert-parallel-size", str(p.ep)]
    argv += ["--kv-block-size", str(e.tokens_per_block),
             "--max-batch-size", str(e.max_batch_size),
             "--max-num-tokens", str(e.max_num_tokens),
             "--max-seq-len", str(e.max_seq_len),
             "--free-gpu-memory-fraction", str(c.serving.kv_cache_free_gpu_mem_fraction)]
    guided = guided_decoding(capabilities(c.backend), c)  # what llm_args writes into the YAML too
    if guided is not None:
        argv += ["--guided-decoding-backend", guided]
    if role in (AGGREGATED, PREFILL):
        # The KV router routes on the blocks these workers hold (Dynamo 1.6.1's templates publish from the
        # aggregated and the prefill worker; decode workers only continue what prefill placed).
        argv.append("--publish-kv-events")
    return argv


def frontend_argv() -> list[str]:
    """Dynamo's OpenAI frontend with the KV-aware router."""
    return ["python3", "-m", "dynamo.frontend", "--http-port", str(FRONTEND_PORT), "--router-mode", "kv"]
