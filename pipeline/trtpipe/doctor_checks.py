"""The checks `python3 -m trtpipe.doctor` (scripts/gpu-acceptance.sh) runs inside the target image, with no weights
downloaded: each returns a list of Finding (what was checked, whether it passed, the detail), so the report can
show every one, and doctor.py refuses before Triton loads anything when one failed.

- llm_api_yaml: every trtllm-pytorch build config's LLM API arguments, and every published llm_api_options.yaml,
  go through the installed TensorRT-LLM's own loader (update_llm_args_with_extra_dict) and its TorchLlmArgs
  class, so a name the image's version spells differently fails here, not at model load.
- engine_configs: every published tensorrtllm model config against the image's tensorrtllm backend: the backend
  library and executor worker exist, and every input, output and parameter the config names is one the image's
  own tensorrt_llm template (inflight_batcher_llm/tensorrt_llm/config.pbtxt) declares.
- toolchain: the installed TensorRT-LLM and the image's Triton release against the table's pinned row, and each
  live model's recorded build (TensorRT-LLM, image, GPU SM) against this machine; then each backend's own
  serving preflight (GPUs, architecture, memory).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtpipe.errors import TrtpipeError
from trtpipe.repo import layout
from trtpipe.repo.tensorrtllm_configs import DRAFT_PARAMETER, parse_pbtxt
from trtpipe.trt.preflight import Machine
from trtpipe.trt.toolchain import PINNED, check_installed, same_release

# Parameters trtpipe writes that the upstream template leaves to fill_template (or does not have): its own draft
# key, and the fixed ones the template hard-codes rather than declaring as ${key}.
TRTPIPE_PARAMETERS = {DRAFT_PARAMETER, "executor_worker_path", "FORCE_CPU_ONLY_INPUT_TENSORS"}
BACKEND_LIBRARY = "/opt/tritonserver/backends/tensorrtllm/libtriton_tensorrtllm.so"


@dataclass(frozen=True)
class Finding:
    check: str
    subject: str
    ok: bool
    detail: str


def _find(check: str, subject: str, ok: bool, detail: str) -> Finding:
    return Finding(check, subject, ok, detail)


# --- the LLM API arguments ---------------------------------------------------------------------------------------
def validate_llm_args(tensorrt_llm: Any, args: dict[str, Any], base: dict[str, Any]) -> None:
    """What LLM(**args) would validate, without loading a model: the installed loader, then TorchLlmArgs."""
    import importlib

    module = importlib.import_module(f"{tensorrt_llm.__name__}.llmapi.llm_args")
    merged = module.update_llm_args_with_extra_dict(dict(base), dict(args), "llm_api_options.yaml")
    module.TorchLlmArgs(**merged)


def check_llm_api_yaml(tensorrt_llm: Any, repo: Path | None, config_names: list[str]) -> list[Finding]:
    from trtpipe.config import load_config
    from trtpipe.trt.llm_args import check_written_for, llm_args, read_llm_args

    findings = []
    for name in config_names:
        config = load_config(name)
        try:
            validate_llm_args(tensorrt_llm, llm_args(config, has_draft=config.speculation is not None),
                              {"model": config.source.hf})
            findings.append(_find("llm_api_yaml", f"config {name}", True, "accepted by TorchLlmArgs"))
        except Exception as e:  # noqa: BLE001 - the image's own validation error is the finding
            findings.append(_find("llm_api_yaml", f"config {name}", False, f"{type(e).__name__}: {e}"))
    for engine_dir in _published_llm_api_dirs(repo):
        try:
            args, record = read_llm_args(engine_dir)
            check_written_for(record, tensorrt_llm.__version__, engine_dir)
            validate_llm_args(tensorrt_llm, args, {"model": str(engine_dir / "checkpoint")})
            findings.append(_find("llm_api_yaml", str(engine_dir), True, f"written for {record['tensorrt_llm']}"))
        except Exception as e:  # noqa: BLE001
            findings.append(_find("llm_api_yaml", str(engine_dir), False, f"{type(e).__name__}: {e}"))
    return findings


def _published_llm_api_dirs(repo: Path | None) -> list[Path]:
    from trtpipe.trt.llm_args import OPTIONS_FILE

    dirs = []
    for model in layout.published_models(repo) if repo else []:
        model_dir = repo / layout.engine_model_name(model)
        engine = model_dir / str(layout.live_version(model_dir)) / "engine"
        if (engine / OPTIONS_FILE).is_file():
            dirs.append(engine)
    return dirs


# --- the tensorrtllm model configs -------------------------------------------------------------------------------
def _bracket_block(text: str, start: int) -> str:
    depth, i = 0, start
    while i < len(text):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0 and text[i] == "]":
            return text[start:i]
        i += 1
    return text[start:]


def template_names(template: str) -> dict[str, set[str]]:
    """Input, output and parameter names the upstream tensorrt_llm template declares (it has ${...}
    placeholders, so it is read as text, not parsed as a ModelConfig)."""
    names: dict[str, set[str]] = {}
    for section in ("input", "output"):
        m = re.search(rf"^{section}\s*\[", template, re.MULTILINE)
        block = _bracket_block(template, m.end() - 1) if m else ""
        names[section] = set(re.findall(r'name:\s*"([^"]+)"', block))
    names["parameters"] = set(re.findall(r'parameters\s*:?\s*{\s*key:\s*"([^"]+)"', template))
    return names


def check_engine_configs(repo: Path | None, template_path: Path, is_file=os.path.isfile) -> list[Finding]:
    findings = []
    cfgs = sorted(repo.glob("*/config.pbtxt")) if repo and repo.is_dir() else []
    engines = [(p, cfg) for p, cfg in ((p, parse_pbtxt(p.read_text())) for p in cfgs) if cfg.backend == "tensorrtllm"]
    if not engines:
        return findings
    if not template_path.is_file():
        return [_find("engine_configs", str(template_path), False, "the image's tensorrt_llm template is missing")]
    declared = template_names(template_path.read_text())
    for path, cfg in engines:
        unknown = {"input": {t.name for t in cfg.input} - declared["input"],
                   "output": {t.name for t in cfg.output} - declared["output"],
                   "parameters": set(cfg.parameters) - declared["parameters"] - TRTPIPE_PARAMETERS}
        missing = [f for f in (BACKEND_LIBRARY, cfg.parameters["executor_worker_path"].string_value) if not is_file(f)]
        wrong = {k: sorted(v) for k, v in unknown.items() if v}
        ok = not wrong and not missing
        detail = "every name is the image's" if ok else f"not in the image's template: {wrong}; missing: {missing}"
        findings.append(_find("engine_configs", path.parent.name, ok, detail))
    return findings


# --- the toolchain -------------------------------------------------------------------------------------------------
def _recorded_build(model_dir: Path) -> dict[str, Any]:
    """What a live version says it was built with: trt-engine's compile fingerprint or the LLM API record."""
    import json

    from trtpipe.manifest import Manifest

    version = model_dir / str(layout.live_version(model_dir))
    manifest = Manifest.read(version / "manifest.json")
    compile_meta = next((s.meta for s in manifest.stages if s.stage == "compile"), {})
    built = dict(compile_meta.get("build_fingerprint") or
                 {"tensorrt_llm": (compile_meta.get("engine_limits") or {}).get("tensorrt_llm_version")})
    record = version / "engine" / "llm_api_options.trtpipe.json"
    if record.is_file():
        data = json.loads(record.read_text())
        built.update(tensorrt_llm=data.get("tensorrt_llm"), image=data.get("image"))
    return built


def _release_of(image: str | None) -> str | None:
    """"nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3" -> "25.12"."""
    m = re.search(r":(\d\d\.\d\d)-", image or "")
    return m.group(1) if m else None


def check_toolchain(repo: Path | None, machine: Machine, triton_release: str | None) -> list[Finding]:
    problems = check_installed(machine.tensorrt_llm, machine.modelopt)
    findings = [_find("toolchain", "image", not problems, "; ".join(problems) or f"matches {PINNED.image}")]
    release_ok = triton_release == PINNED.triton_release
    findings.append(_find("toolchain", "triton", release_ok,
                          f"NVIDIA_TRITON_SERVER_VERSION={triton_release}; the table pins {PINNED.triton_release}"))
    sm = ("{}.{}".format(*machine.gpus[0].compute_capability)) if machine.gpus else None
    for model in layout.published_models(repo) if repo else []:
        built = _recorded_build(repo / layout.engine_model_name(model))
        wrong = []
        if built.get("tensorrt_llm") and machine.tensorrt_llm and not same_release(machine.tensorrt_llm,
                                                                                 built["tensorrt_llm"]):
            wrong.append(f"built with TensorRT-LLM {built['tensorrt_llm']}, this is {machine.tensorrt_llm}")
        if built.get("compute_capability") and built["compute_capability"] != sm:
            wrong.append(f"built for SM {built['compute_capability']}, this GPU is {sm}")
        release = built.get("triton_release") or _release_of(built.get("image"))
        if release and release != triton_release:
            wrong.append(f"built in the {release} image, this is {triton_release}")
        findings.append(_find("toolchain", model, not wrong, "; ".join(wrong) or f"build record matches ({built})"))
    return findings + check_serving(repo, machine)


def check_serving(repo: Path | None, machine: Machine) -> list[Finding]:
    """Each live model's backend preflight (what `trtpipe serve` runs before starting Triton)."""
    from trtpipe.serve.process.launcher import preflight_repository

    if not repo or not layout.published_models(repo):
        return []
    try:
        passed = preflight_repository(repo, machine)
        return [_find("serving_preflight", str(repo), True, "; ".join(passed))]
    except TrtpipeError as e:
        return [_find("serving_preflight", str(repo), False, e.message)]
