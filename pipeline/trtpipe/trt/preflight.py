"""Before a GPU command runs: is this machine the one the artifact needs?

A TensorRT engine only loads on the TensorRT version and the GPU architecture (SM) it was built for, on
as many GPUs as it has ranks, with memory for its weights and KV cache. These checks turn each of those
failures, which TensorRT-LLM reports as a deserialization error or an OOM minutes into a load, into a
refusal that says what to do. The machine is described by `Machine` (from nvidia-smi and installed
package versions) so the checks are pure functions and tested without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from typing import Any, Callable

from trtpipe.config import BuildConfig
from trtpipe.errors import MachineError
from trtpipe.hardware import MIB, GpuSpec, match_smi_name
from trtpipe.trt.recipes import IMAGE, TOOLCHAIN, TrtTools, uses_modelopt
from trtpipe.trt.toolchain import PINNED, modelopt_allowed, same_release, version_tuple

DOCKER_RUN = (f"docker run --rm -it --gpus all --ipc=host --ulimit memlock=-1 --shm-size=16g "
              f"-v $PWD:/workspace -w /workspace {IMAGE}")


class PreflightError(MachineError):
    """The machine cannot build or serve this artifact."""


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_mib: int
    compute_capability: tuple[int, int]


@dataclass(frozen=True)
class Machine:
    gpus: list[GpuInfo] = field(default_factory=list)
    tensorrt_llm: str | None = None
    tensorrt: str | None = None
    modelopt: str | None = None
    nvidia_smi: bool = False
    # The NVIDIA container release this runs in (NVIDIA_TRITON_SERVER_VERSION, e.g. "25.12"); None outside one.
    triton_release: str | None = None


Runner = Callable[[list[str]], str]


def _run(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def parse_nvidia_smi(csv_text: str) -> list[GpuInfo]:
    """Rows of `nvidia-smi --query-gpu=index,name,memory.total,compute_cap --format=csv,noheader,nounits`."""
    gpus = []
    for line in csv_text.strip().splitlines():
        index, name, memory, cc = (part.strip() for part in line.split(","))
        major, minor = cc.split(".")
        gpus.append(GpuInfo(int(index), name, int(float(memory)), (int(major), int(minor))))
    return gpus


def detect_machine(run: Runner = _run, which: Callable[[str], str | None] = shutil.which) -> Machine:
    has_smi = which("nvidia-smi") is not None
    gpus: list[GpuInfo] = []
    if has_smi:
        try:
            gpus = parse_nvidia_smi(run(["nvidia-smi", "--query-gpu=index,name,memory.total,compute_cap",
                                         "--format=csv,noheader,nounits"]))
        except (subprocess.SubprocessError, OSError, ValueError):
            gpus = []
    return Machine(gpus=gpus, tensorrt_llm=_version("tensorrt_llm", "tensorrt-llm"),
                   tensorrt=_version("tensorrt", "tensorrt-cu12", "tensorrt_cu12"),
                   modelopt=_version("nvidia-modelopt", "nvidia_modelopt"), nvidia_smi=has_smi,
                   triton_release=os.environ.get("NVIDIA_TRITON_SERVER_VERSION"))


def build_fingerprint(machine: Machine) -> dict[str, Any]:
    """What a GPU build records in its manifest, so `preflight` can compare a serving machine to it."""
    gpu = machine.gpus[0] if machine.gpus else None
    return {"tensorrt_llm": machine.tensorrt_llm, "tensorrt": machine.tensorrt,
            "triton_release": machine.triton_release,
            "gpu_name": gpu.name if gpu else None,
            "compute_capability": f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}" if gpu else None}


def _refuse(what: str, fix: str) -> PreflightError:
    return PreflightError(what, where="preflight", fix=fix)


def _missing_gpu_or_tensorrt_llm(machine: Machine, find_spec: Callable[[str], Any]) -> list[str]:
    """What every TensorRT-LLM path needs first: a visible GPU and the tensorrt_llm package."""
    missing = []
    if not machine.nvidia_smi:
        missing.append("nvidia-smi (no NVIDIA driver or GPU visible)")
    elif not machine.gpus:
        missing.append("a GPU (nvidia-smi lists none)")
    if find_spec("tensorrt_llm") is None:
        missing.append("the tensorrt_llm Python package")
    return missing


def check_toolchain(tools: TrtTools | None = None, *, machine: Machine | None = None,
                    need_modelopt: bool = False, is_file: Callable[[str], bool] = lambda p: Path(p).is_file(),
                    which: Callable[[str], str | None] = shutil.which,
                    find_spec: Callable[[str], Any] = util.find_spec) -> Machine:
    """Refuse, naming the image and the docker command, unless TensorRT-LLM, its tools and a GPU are here."""
    tools = tools or TrtTools()
    machine = machine or detect_machine(which=which)
    missing = _missing_gpu_or_tensorrt_llm(machine, find_spec)
    if which(tools.trtllm_build) is None and not is_file(tools.trtllm_build):
        missing.append(f"{tools.trtllm_build}")
    for script in (tools.convert_script, tools.quantize_script):
        if not is_file(script):
            missing.append(script)
    if missing:
        raise _refuse("the TensorRT-LLM toolchain is not here: missing " + "; ".join(missing),
                      f"run trtpipe inside {IMAGE} (TensorRT-LLM {TOOLCHAIN['tensorrt_llm']}, the pinned row of "
                      f"trt/toolchain.py), e.g. "
                      f"`{DOCKER_RUN} trtpipe build CONFIG`, or build docker/Dockerfile; the reference backend "
                      "needs none of this (backend: reference)")
    if machine.tensorrt_llm and not same_release(machine.tensorrt_llm, TOOLCHAIN["tensorrt_llm"]):
        raise _refuse(f"TensorRT-LLM {machine.tensorrt_llm} is installed; trtpipe's recipes are pinned to "
                      f"{TOOLCHAIN['tensorrt_llm']}", f"use {IMAGE}: `{DOCKER_RUN}`")
    if need_modelopt:
        if machine.modelopt is None:
            raise _refuse("nvidia-modelopt is not installed; quantize.py needs it",
                          f"pip install 'nvidia-modelopt[torch]{TOOLCHAIN['modelopt']}' inside {IMAGE}")
        if not modelopt_allowed(machine.modelopt, PINNED.modelopt):
            raise _refuse(f"nvidia-modelopt {machine.modelopt} no longer exports TensorRT-LLM checkpoints",
                          f"pip install 'nvidia-modelopt[torch]{TOOLCHAIN['modelopt']}'")
    return machine


def preflight(config: BuildConfig, machine: Machine, *, built: dict[str, Any] | None = None,
              required_bytes_per_gpu: int | None = None) -> list[str]:
    """Check a machine against what serving (or building) `config` needs; raise on the first refusal.

    built: the build fingerprint recorded in the manifest (build_fingerprint()), when serving a built
    engine. required_bytes_per_gpu: from the plan (weights + reserve + minimum KV); default: computed.
    Returns the checks that passed, for the log."""
    passed = []
    world = config.parallelism.world_size
    if len(machine.gpus) < world:
        raise _refuse(f"{config.name} needs {world} GPU(s) (tp={config.parallelism.tp} x pp={config.parallelism.pp}); "
                      f"this machine has {len(machine.gpus)}",
                      f"run on a node with {world} GPUs (docker --gpus all), or rebuild with a smaller tp "
                      f"(trtpipe plan {config.name} --gpu NAME shows the smallest that fits)")
    passed.append(f"{len(machine.gpus)} GPU(s) >= world size {world}")
    gpus = machine.gpus[:world]
    ccs = {g.compute_capability for g in gpus}
    if len(ccs) > 1:
        raise _refuse(f"the first {world} GPUs differ in architecture ({sorted(ccs)})",
                      "set CUDA_VISIBLE_DEVICES to identical GPUs")
    cc = gpus[0].compute_capability
    q = config.quantization
    if q and q.format == "nvfp4" and cc < (10, 0):
        raise _refuse(f"{config.name} uses NVFP4, which needs compute capability >= 10.0 (Blackwell); "
                      f"{gpus[0].name} is {cc[0]}.{cc[1]}", "serve it on B200/GB200, or build a variant with "
                                                            "format fp8 (Ada/Hopper) or int4_awq")
    if q and (q.format in ("fp8", "w4a8_awq") or q.kv_cache_dtype == "fp8") and cc < (8, 9):
        raise _refuse(f"{config.name} uses FP8, which needs compute capability >= 8.9; {gpus[0].name} is "
                      f"{cc[0]}.{cc[1]}", "serve it on Ada/Hopper (L40S, H100, H200), or build a variant with "
                                          "format int8_wo / int4_awq and no fp8 KV cache")
    passed.append(f"compute capability {cc[0]}.{cc[1]}")
    if built:
        want_cc = built.get("compute_capability")
        if want_cc and want_cc != f"{cc[0]}.{cc[1]}":
            raise _refuse(f"the engine was built for compute capability {want_cc} ({built.get('gpu_name')}); "
                          f"this GPU is {cc[0]}.{cc[1]} ({gpus[0].name})",
                          f"rebuild on this GPU type: trtpipe build {config.name} --force compile")
        for key in ("tensorrt_llm", "tensorrt"):
            if built.get(key) and getattr(machine, key) != built[key]:
                raise _refuse(f"the engine was built with {key} {built[key]}; this machine has "
                              f"{getattr(machine, key) or 'none'}",
                              f"serve with the image it was built in ({IMAGE}), or rebuild here")
        passed.append("toolchain and GPU match the build")
    if required_bytes_per_gpu is None:
        required_bytes_per_gpu = _required_bytes(config, gpus[0])
    short = [g for g in gpus if g.memory_mib * MIB < required_bytes_per_gpu]
    if short:
        raise _refuse(f"{config.name} needs {required_bytes_per_gpu / (1 << 30):.1f} GiB per GPU (weights, "
                      f"activations, one full sequence of KV); GPU {short[0].index} has "
                      f"{short[0].memory_mib / 1024:.1f} GiB",
                      f"use more GPUs (raise parallelism.tp), a smaller quantization, or lower engine limits; "
                      f"see trtpipe plan {config.name} --gpu NAME")
    passed.append(f"{required_bytes_per_gpu / (1 << 30):.1f} GiB per GPU available")
    return passed


def _required_bytes(config: BuildConfig, gpu: GpuInfo) -> int:
    from trtpipe.config import load_draft
    from trtpipe.capacity import arch_for, engine_memory

    mem = engine_memory(config, arch_for(config))
    draft_len = config.speculation.max_draft_len if config.speculation else 0
    need = mem.weight_bytes + mem.reserve_bytes + (config.engine.max_seq_len + draft_len) * mem.kv_bytes_per_token
    draft = load_draft(config)
    if draft is not None:
        # The draft (an engine, or the LLM API's draft model / EAGLE-3 head) shares GPU 0 with rank 0.
        d = engine_memory(draft, arch_for(draft))
        need += d.weight_bytes + d.reserve_bytes + draft.engine.max_seq_len * d.kv_bytes_per_token
    return need


def gpu_spec_for(info: GpuInfo) -> GpuSpec | None:
    return match_smi_name(info.name)


def preflight_build(config: BuildConfig, tools: TrtTools | None = None, **kwargs) -> Machine:
    """check_toolchain with ModelOpt required when the config quantizes through it."""
    return check_toolchain(tools, need_modelopt=uses_modelopt(config), **kwargs)


def check_llm_api_toolchain(config: BuildConfig, *, machine: Machine | None = None,
                            find_spec: Callable[[str], Any] | None = None,
                            is_file: Callable[[str], bool] = lambda p: Path(p).is_file(), tools=None) -> Machine:
    """backend trtllm-pytorch: refuse, naming the image, unless a GPU, TensorRT-LLM >=
    llm_args.TOOLCHAIN["min_tensorrt_llm"] (its PyTorch backend reads the LlmArgs YAML) and, for a quantized config, ModelOpt and its hf_ptq.py are here."""
    from trtpipe.trt import llm_args

    tools = tools or llm_args.LlmApiTools()
    machine = machine or detect_machine()
    find_spec = find_spec or util.find_spec
    image, want = llm_args.IMAGE, llm_args.TOOLCHAIN
    docker = DOCKER_RUN.replace(IMAGE, image)
    missing = _missing_gpu_or_tensorrt_llm(machine, find_spec)
    if missing:
        raise _refuse("the TensorRT-LLM LLM API is not here: missing " + "; ".join(missing),
                      f"run trtpipe inside {image} (TensorRT-LLM {want['tensorrt_llm']}), e.g. `{docker} trtpipe "
                      "build CONFIG`, or build docker/Dockerfile; the reference backend needs none of this")
    if machine.tensorrt_llm and version_tuple(machine.tensorrt_llm) < version_tuple(want["min_tensorrt_llm"]):
        raise _refuse(f"TensorRT-LLM {machine.tensorrt_llm} is installed; backend trtllm-pytorch needs >= "
                      f"{want['min_tensorrt_llm']} (the PyTorch backend and its LlmArgs YAML)",
                      f"use {image} (TensorRT-LLM {want['tensorrt_llm']}): `{docker}`, or backend: trt-engine "
                      "for this TensorRT-LLM")
    if config.quantization is not None:
        if machine.modelopt is None:
            raise _refuse("nvidia-modelopt is not installed; quantizing to a Hugging Face checkpoint needs it",
                          f"pip install 'nvidia-modelopt[torch]{want['modelopt']}' inside {image}")
        if not is_file(tools.hf_ptq_script):
            raise _refuse(f"ModelOpt's {tools.hf_ptq_script} is not here",
                          "git clone https://github.com/NVIDIA/TensorRT-Model-Optimizer at the tag of the installed "
                          "nvidia-modelopt and set TRTPIPE_MODELOPT_EXAMPLES to its examples/ directory, or use a "
                          "pre-quantized checkpoint (e.g. nvidia/Llama-3.1-8B-Instruct-FP8) without a quantization "
                          "section")
    return machine


def check_loaded_llm_api(version: str) -> None:
    """In the Triton model, before LLM(...): the TensorRT-LLM that will read the YAML is new enough."""
    from trtpipe.trt import llm_args

    if version_tuple(version) < version_tuple(llm_args.TOOLCHAIN["min_tensorrt_llm"]):
        raise _refuse(f"TensorRT-LLM {version} is installed; this model's LLM API arguments need >= "
                      f"{llm_args.TOOLCHAIN['min_tensorrt_llm']}", f"serve it in {llm_args.IMAGE}")


def check_prequantized_machine(config: BuildConfig, recorded: dict[str, Any] | None, machine: Machine) -> list[str]:
    """Refuse a GPU older than the architecture a checkpoint that came quantized needs. `recorded`: what
    trt/prequantized.py `record` wrote under "prequantized" (None for full precision). A machine without GPUs is left
    to preflight, which refuses it first. Returns the check that passed, if one ran."""
    if not recorded or not machine.gpus:
        return []
    need = recorded.get("min_compute_capability")
    cc = machine.gpus[0].compute_capability
    if need and tuple(cc) < tuple(need):
        raise _refuse(f"{config.name}'s checkpoint is {recorded['describe']}, which needs compute capability "
                      f">= {need[0]}.{need[1]}; {machine.gpus[0].name} is {cc[0]}.{cc[1]}",
                      "serve it on a newer GPU, or build from a checkpoint in a format this GPU runs (README: "
                      "Pre-quantized checkpoints on the GPU backends)")
    return [f"compute capability {cc[0]}.{cc[1]} runs {recorded['method']}"] if need else []
