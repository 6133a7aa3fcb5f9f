"""The toolchain table: which NVIDIA image holds which Triton, TensorRT-LLM, TensorRT and CUDA, and the one
row trtpipe pins. Everything that names a version reads it: preflight (trt/preflight.py), the recipes' cache
keys (trt/recipes.py, trt/llm_args.py), docker/Dockerfile (its FROM argument and its post-install check, which
runs `python3 -m trtpipe.trt.toolchain check`), scripts/gpu-smoke.sh and scripts/gpu-acceptance.sh (they run
`python3 -m trtpipe.trt.toolchain get KEY` before trtpipe is installed), the compose file and Kubernetes
manifests (the image tag `trtpipe:<IMAGE_TAG>`) and the README. tests/unit/trt/test_toolchain.py checks every
place that names a version against this table.

Each row is copied from NVIDIA's published Release Compatibility Matrix for the `trtllm-python-py3` container
(Triton user guide, docs/introduction/compatibility.html, as stored on 2026-07; SOURCE). That matrix lists
25.12 with TensorRT-LLM 1.1.0, TensorRT 10.13.3.9, CUDA 13.0.2.006 and Python 3.12.3. NOTE: the
tensorrtllm_backend Dockerfile builds release/1.2.1 on a 25.12 base, but that is a build recipe, not the
prebuilt image: trtpipe pins the documented pair (image 25.12, TensorRT-LLM 1.1.0). No newer trtllm-python-py3
row was published in the matrix as read (release notes for 26.xx exist but list no TensorRT-LLM version).

DYNAMO is the one NVIDIA Dynamo release `trtpipe deploy dynamo` targets (deploy/dynamo_worker.py): its images and the
TensorRT-LLM they ship, which is Dynamo's pin, not the Triton image's.

ModelOpt is not in the matrix: `modelopt` is trtpipe's own constraint, not a documented fact (< 0.49 because
0.49 drops export_tensorrt_llm_checkpoint, which quantize.py uses; reference/trtllm-facts.md section 0).

Imports nothing but the standard library, so shell scripts can read it from a checkout:
    PYTHONPATH=pipeline python3 -m trtpipe.trt.toolchain get tensorrt_llm
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import asdict, dataclass

SOURCE = ("https://docs.nvidia.com/deeplearning/triton-inference-server/user-guide/docs/introduction/"
          "compatibility.html (Release Compatibility Matrix, container trtllm-python-py3)")


@dataclass(frozen=True)
class ImageRow:
    """One row of the compatibility matrix (plus trtpipe's ModelOpt constraint)."""

    image: str
    triton_release: str
    tensorrt_llm: str
    tensorrt: str
    cuda: str
    python: str
    modelopt: str  # trtpipe's pip constraint, not from the matrix
    source: str = SOURCE

    @property
    def tag(self) -> str:
        return self.image.rsplit(":", 1)[1]

    @property
    def tensorrt_major_minor(self) -> str:
        return ".".join(self.tensorrt.split(".")[:2])


MODELOPT_CONSTRAINT = "<0.49"

ROWS: dict[str, ImageRow] = {row.triton_release: row for row in (
    ImageRow("nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3", "25.12", "1.1.0", "10.13.3.9", "13.0.2.006",
             "3.12.3", MODELOPT_CONSTRAINT),
    ImageRow("nvcr.io/nvidia/tritonserver:25.11-trtllm-python-py3", "25.11", "1.0.3.2510", "10.13.3.9",
             "13.0.2.006", "3.12.3", MODELOPT_CONSTRAINT),
    ImageRow("nvcr.io/nvidia/tritonserver:25.10-trtllm-python-py3", "25.10", "1.0.0", "10.11.0.33", "12.9.1.010",
             "3.12.3", MODELOPT_CONSTRAINT),
)}

# The pinned pair: the newest documented row. Both GPU backends are built and served in it.
PINNED = ROWS["25.12"]
# The trtpipe image built FROM it (docker/Dockerfile); compose and the Kubernetes manifests run this tag.
IMAGE_TAG = f"trtllm-{PINNED.tensorrt_llm}-triton-{PINNED.triton_release}"
TRTPIPE_IMAGE = f"trtpipe:{IMAGE_TAG}"


@dataclass(frozen=True)
class DynamoRow:
    """One NVIDIA Dynamo release as `trtpipe deploy dynamo` uses it (deploy/dynamo_worker.py): its GPU worker runs
    Dynamo's own TensorRT-LLM, which is not the Triton image's above."""

    dynamo: str
    tensorrt_llm: str  # what the release's TensorRT-LLM runtime image and ai-dynamo[trtllm] pin
    worker_image: str  # Dynamo's TensorRT-LLM runtime image: `python3 -m dynamo.trtllm`
    frontend_image: str  # Dynamo's frontend image: `python3 -m dynamo.frontend`
    source: str


# ai-dynamo 1.6.1's wheel metadata (PyPI) pins `tensorrt-llm==1.3.0rc29` for its [trtllm] extra, and its profiler
# templates (dynamo/profiler/templates/dgd/trtllm/*.yaml) and planner examples run these two images. 1.6.1 is also
# the newest ai-dynamo on PyPI, the one trtpipe's CPU workers run. Dynamo 1.7 exists (its docs index lists it) but
# its TensorRT-LLM pin could not be read here, so it is not pinned.
DYNAMO = DynamoRow("1.6.1", "1.3.0rc29", "nvcr.io/nvidia/ai-dynamo/tensorrtllm-runtime:1.6.1",
                   "nvcr.io/nvidia/ai-dynamo/dynamo-frontend:1.6.1",
                   "ai-dynamo 1.6.1 wheel (PyPI): METADATA Requires-Dist tensorrt-llm==1.3.0rc29; extra == 'trtllm'; "
                   "dynamo/profiler/templates/dgd/trtllm/agg.yaml and dynamo/planner/tests/manual/perf_test_configs/")


def version_tuple(version: str) -> tuple[int, ...]:
    """"1.1.0" -> (1, 1, 0); "1.3.0rc20" -> (1, 3, 0); "1.0.3.2510" -> (1, 0, 3)."""
    return tuple(int(x) for x in re.findall(r"\d+", version)[:3])


def same_release(installed: str, pinned: str) -> bool:
    """Whether an installed version string is the pinned release (the image may add a build suffix:
    "1.0.3.2510" is 1.0.3), compared on major.minor.patch."""
    return version_tuple(installed) == version_tuple(pinned)


def modelopt_allowed(version: str, constraint: str = MODELOPT_CONSTRAINT) -> bool:
    """Only the `<X.Y` form is used here (see MODELOPT_CONSTRAINT)."""
    limit = version_tuple(constraint.lstrip("<"))
    return version_tuple(version)[:len(limit)] < limit


def check_installed(tensorrt_llm: str | None, modelopt: str | None, row: ImageRow = PINNED) -> list[str]:
    """What is wrong with an installed TensorRT-LLM / ModelOpt for `row`: empty when they match."""
    problems = []
    if tensorrt_llm is None:
        problems.append("tensorrt_llm is not installed")
    elif not same_release(tensorrt_llm, row.tensorrt_llm):
        problems.append(f"tensorrt_llm {tensorrt_llm} is installed; {row.image} documents {row.tensorrt_llm}")
    if modelopt is not None and not modelopt_allowed(modelopt, row.modelopt):
        problems.append(f"nvidia-modelopt {modelopt} is installed; trtpipe needs {row.modelopt}")
    return problems


def _installed(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str]) -> int:
    """`get KEY` prints one field of the pinned row (or image_tag / trtpipe_image); `json` prints the table;
    `check` compares the installed TensorRT-LLM and ModelOpt with the pinned row (docker/Dockerfile runs it)."""
    if argv[:1] == ["get"] and len(argv) == 2:
        extra = {"image_tag": IMAGE_TAG, "trtpipe_image": TRTPIPE_IMAGE, "tag": PINNED.tag,
                 "dynamo_worker_image": DYNAMO.worker_image, "dynamo_tensorrt_llm": DYNAMO.tensorrt_llm}
        value = extra.get(argv[1], getattr(PINNED, argv[1], None))
        if value is None:
            print(f"toolchain: no field {argv[1]!r}", file=sys.stderr)
            return 2
        print(value)
        return 0
    if argv == ["json"]:
        print(json.dumps({"pinned": PINNED.triton_release, "rows": {k: asdict(r) for k, r in ROWS.items()},
                          "dynamo": asdict(DYNAMO)}, indent=2))
        return 0
    if argv == ["check"]:
        trtllm, modelopt = _installed("tensorrt_llm") or _installed("tensorrt-llm"), _installed("nvidia-modelopt")
        problems = check_installed(trtllm, modelopt)
        for line in problems:
            print(f"toolchain: {line} (table: pipeline/trtpipe/trt/toolchain.py)", file=sys.stderr)
        if not problems:
            print(f"toolchain: tensorrt_llm {trtllm}, nvidia-modelopt {modelopt}: matches {PINNED.image}")
        return 1 if problems else 0
    print("usage: python3 -m trtpipe.trt.toolchain get KEY | json | check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
