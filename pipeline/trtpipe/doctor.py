"""`python3 -m trtpipe.doctor` (run by scripts/gpu-acceptance.sh): first contact with a GPU machine in one command.

Inside the target image, with no weights downloaded, it
1. describes the machine (nvidia-smi, the installed TensorRT-LLM / TensorRT / ModelOpt, the image's Triton release)
   and the table's pinned row (trt/toolchain.py);
2. runs doctor_checks: every trtllm-pytorch config's and published llm_api_options.yaml through the image's own
   TensorRT-LLM loader and TorchLlmArgs, every tensorrtllm model config against the image's backend and template,
   the toolchain and each live model's build record against this machine, and each backend's serving preflight;
3. refuses (exit 1) when any check failed, before Triton loads anything;
4. otherwise runs scripts/gpu-smoke.sh (build, serve, the openai client, bench per config) unless --no-smoke;
and writes one report file (JSON) that a user can attach to a bug, whatever happened.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from trtpipe.doctor_checks import Finding, check_engine_configs, check_llm_api_yaml, check_toolchain
from trtpipe.trt.preflight import Machine, detect_machine
from trtpipe.trt.recipes import TrtTools
from trtpipe.trt.toolchain import PINNED, TRTPIPE_IMAGE

ROOT = Path(__file__).resolve().parents[2]
TRITON_RELEASE_ENV = "NVIDIA_TRITON_SERVER_VERSION"  # set in NVIDIA's Triton images (e.g. "25.12")


def pytorch_config_names() -> list[str]:
    from trtpipe.config import load_config
    from trtpipe.nightly import all_config_names

    return [n for n in all_config_names() if load_config(n).backend == "trtllm-pytorch"]


def _import_tensorrt_llm() -> Any | None:
    try:
        import tensorrt_llm
    except Exception:  # noqa: BLE001 - no TensorRT-LLM (or one that fails to import) is itself a finding
        return None
    return tensorrt_llm


def run_checks(repo: Path | None, machine: Machine, tensorrt_llm: Any | None, *, triton_release: str | None,
               template: Path, config_names: list[str], is_file: Callable[[str], bool] = os.path.isfile
               ) -> list[Finding]:
    findings = check_toolchain(repo, machine, triton_release)
    if tensorrt_llm is None:
        findings.append(Finding("llm_api_yaml", "tensorrt_llm", False, "python3 cannot import tensorrt_llm"))
    else:
        findings += check_llm_api_yaml(tensorrt_llm, repo, config_names)
    return findings + check_engine_configs(repo, template, is_file=is_file)


def run_smoke(out_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """scripts/gpu-smoke.sh with its results under out_dir; its exit code and the tail of its output."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "gpu-smoke.log"
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.run(["bash", str(ROOT / "scripts" / "gpu-smoke.sh")], stdout=f, stderr=subprocess.STDOUT,
                            env={**os.environ, "SMOKE_OUT": str(out_dir), "SMOKE_SKIP_INSTALL": "1", **(env or {})},
                            cwd=ROOT).returncode
    lines = log.read_text(errors="replace").splitlines()
    return {"exit_code": rc, "seconds": round(time.monotonic() - t0, 1), "log": str(log), "tail": lines[-60:]}


def write_report(path: Path, machine: Machine, findings: list[Finding], smoke: dict[str, Any] | None,
                 triton_release: str | None) -> dict[str, Any]:
    report = {
        "trtpipe_image": TRTPIPE_IMAGE, "pinned": dataclasses.asdict(PINNED), "host": platform.node(),
        "machine": {**dataclasses.asdict(machine), "triton_release": triton_release},
        "passed": all(f.ok for f in findings) and (smoke is None or smoke["exit_code"] == 0),
        "checks": [dataclasses.asdict(f) for f in findings], "smoke": smoke,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m trtpipe.doctor", description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=None, help="a model repository whose live models to check")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    parser.add_argument("--out", type=Path, default=Path(f"gpu-acceptance-{stamp}"), help="where report.json goes")
    parser.add_argument("--no-smoke", action="store_true", help="the checks only")
    args = parser.parse_args(argv)
    machine, release = detect_machine(), os.environ.get(TRITON_RELEASE_ENV)
    template = Path(TrtTools().models_dir) / "tensorrt_llm" / "config.pbtxt"
    findings = run_checks(args.repo, machine, _import_tensorrt_llm(), triton_release=release, template=template,
                          config_names=pytorch_config_names())
    for f in findings:
        print(f"{'ok  ' if f.ok else 'FAIL'} {f.check}: {f.subject}: {f.detail}")
    refused = not all(f.ok for f in findings)
    smoke = None if refused or args.no_smoke else run_smoke(args.out / "smoke")
    report = write_report(args.out / "report.json", machine, findings, smoke, release)
    if refused:
        print(f"doctor: refused before Triton loads anything; report: {args.out / 'report.json'}", file=sys.stderr)
    else:
        print(f"doctor: {'PASSED' if report['passed'] else 'FAILED'}; report: {args.out / 'report.json'}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
