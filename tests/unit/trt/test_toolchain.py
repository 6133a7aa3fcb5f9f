"""The one toolchain table (trtpipe/trt/toolchain.py) and every place that names a version.

The pinned pair must be a row of NVIDIA's compatibility matrix as the table copies it, and every file that names
an NGC image, a TensorRT-LLM or TensorRT version, or the trtpipe image tag must agree with the table: the
Dockerfile, compose, the Kubernetes manifests, the GPU scripts, the README, build configs and the package. These
tests read files; they pull no image and run no TensorRT-LLM.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trtpipe.trt import toolchain
from trtpipe.trt.llm_api_dialects import OLDEST
from trtpipe.trt.toolchain import PINNED, ROWS, TRTPIPE_IMAGE, check_installed

ROOT = Path(__file__).resolve().parents[3]
# Where versions are named for users and machines (tests are not: they pin behaviour, not versions).
SCANNED = [ROOT / "README.md", *sorted((ROOT / "docker").rglob("*")), *sorted((ROOT / "scripts").glob("*.sh")),
           *sorted((ROOT / "build_configs").glob("*.yaml")), *sorted((ROOT / "pipeline").rglob("*.py")),
           *sorted((ROOT / "model_repo").rglob("*.py"))]
NGC_IMAGE = re.compile(r"nvcr\.io/nvidia/tritonserver:[\w.-]+")
TRTPIPE_TAG = re.compile(r"\btrtpipe:[a-z0-9][\w.-]*")
TRTLLM_VERSION = re.compile(r"\b(?:TensorRT-LLM|tensorrt_llm|TRT-LLM) (>= ?)?(\d+\.\d+(?:\.\d+)?(?:rc\d+)?)\b")
TENSORRT_VERSION = re.compile(r"\bTensorRT (\d+\.\d+\.\d+(?:\.\d+)?)\b")
# Versions named on purpose that are not the pinned one: each says why.
OTHER_TRTLLM = {
    "1.3.0rc20": "the last release with the TensorRT engine backend (release note)",
    "1.2.1": "what the tensorrtllm_backend Dockerfile builds, as opposed to the prebuilt image",
    "1.3": "the first release whose LLM API spells Eagle3 / speculative_model / tokens_per_block (dialect 1.3)",
    "1.4": "the release line where the PyTorch backend is the only one",
    toolchain.DYNAMO.tensorrt_llm: "Dynamo's own TensorRT-LLM, in its runtime image (trtpipe deploy dynamo's workers)",
}
DYNAMO_IMAGE = re.compile(r"nvcr\.io/nvidia/ai-dynamo/[\w.-]+:[\w.-]+")


def _text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


def _named(pattern: re.Pattern) -> list[tuple[str, str]]:
    found = []
    for path in SCANNED:
        if path.name == "toolchain.py":  # the table itself
            continue
        for m in pattern.finditer(_text(path)):
            found.append((str(path.relative_to(ROOT)), m.group(0)))
    return found


def test_the_pinned_pair_is_the_documented_25_12_row_of_the_compatibility_matrix():
    assert PINNED is ROWS["25.12"]
    assert (PINNED.image, PINNED.tensorrt_llm, PINNED.tensorrt, PINNED.cuda) == (
        "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3", "1.1.0", "10.13.3.9", "13.0.2.006")
    assert "compatibility.html" in PINNED.source and "trtllm-python-py3" in PINNED.source
    assert all(row.image.endswith(f":{release}-trtllm-python-py3") for release, row in ROWS.items())
    assert TRTPIPE_IMAGE == "trtpipe:trtllm-1.1.0-triton-25.12"


def test_every_ngc_image_named_anywhere_is_the_pinned_one():
    named = _named(NGC_IMAGE)
    assert named, "no file names the image: the scan is broken"
    assert {image for _, image in named} == {PINNED.image}, [n for n in named if n[1] != PINNED.image]


def test_every_trtpipe_image_tag_is_the_one_built_from_the_pinned_image():
    named = _named(TRTPIPE_TAG)
    assert {tag for _, tag in named} == {TRTPIPE_IMAGE}, [n for n in named if n[1] != TRTPIPE_IMAGE]
    compose = yaml.safe_load(_text(ROOT / "docker" / "compose.yaml"))
    assert compose["x-trtpipe"]["image"] == TRTPIPE_IMAGE
    for path in (ROOT / "docker" / "k8s").glob("*.yaml"):
        for doc in filter(None, yaml.safe_load_all(_text(path))):
            pod = (doc.get("spec", {}).get("jobTemplate", {}).get("spec", {}) or doc.get("spec", {})).get(
                "template", {}).get("spec", {})
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                if c["image"].startswith("trtpipe"):
                    assert c["image"] == TRTPIPE_IMAGE, (path.name, c["name"])


def test_every_tensorrt_llm_version_named_is_the_pinned_one_or_a_named_exception():
    wrong = []
    for where, mention in _named(TRTLLM_VERSION):
        m = TRTLLM_VERSION.search(mention)
        at_least, version = m.group(1), m.group(2)
        if at_least:
            ok = version == OLDEST or version in OTHER_TRTLLM
        else:
            ok = version == PINNED.tensorrt_llm or version in OTHER_TRTLLM
        if not ok:
            wrong.append((where, mention))
    assert wrong == []


def test_every_dynamo_image_named_anywhere_is_the_pinned_dynamo_releases():
    named = _named(DYNAMO_IMAGE)
    assert named, "no file names a Dynamo image: the scan is broken"
    assert {image for _, image in named} == {toolchain.DYNAMO.worker_image, toolchain.DYNAMO.frontend_image}, named
    assert all(image.endswith(f":{toolchain.DYNAMO.dynamo}") for _, image in named)


def test_every_tensorrt_version_named_is_the_pinned_images():
    named = _named(TENSORRT_VERSION)
    assert {TENSORRT_VERSION.search(m).group(1) for _, m in named} <= {PINNED.tensorrt}, named


def test_the_dockerfile_starts_from_the_pinned_image_and_checks_the_install_against_the_table():
    dockerfile = _text(ROOT / "docker" / "Dockerfile")
    assert f"ARG TRTPIPE_BASE_IMAGE={PINNED.image}\nFROM ${{TRTPIPE_BASE_IMAGE}}\n" in dockerfile
    assert "python3 -m trtpipe.trt.toolchain check" in dockerfile
    assert "python3 -m trtpipe.trt.toolchain get modelopt" in dockerfile
    assert "assert trt.startswith" not in dockerfile  # the version lives in the table, not here


@pytest.mark.parametrize("script", ["gpu-smoke.sh", "gpu-acceptance.sh"])
def test_the_gpu_scripts_read_versions_from_the_table(script):
    text = _text(ROOT / "scripts" / script)
    assert "python3 -m trtpipe.trt.toolchain get" in text
    assert not re.search(r"TRTLLM_VERSION=\d", text) and "nvidia-modelopt<0" not in text


def test_the_table_is_readable_from_a_checkout_without_trtpipe_installed(tmp_path):
    # What the scripts do before `pip install`: only the standard library is imported.
    env = {"PYTHONPATH": str(ROOT / "pipeline"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-S", "-m", "trtpipe.trt.toolchain", "get", "tensorrt_llm"],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert (out.returncode, out.stdout) == (0, "1.1.0\n"), out.stderr
    assert toolchain.main(["get", "trtpipe_image"]) == 0 and toolchain.main(["get", "nope"]) == 2


def test_the_install_check_names_what_differs_from_the_pinned_row():
    assert check_installed("1.1.0", "0.37.0") == []
    assert check_installed("1.1.0.post1", None) == []
    assert check_installed("1.2.1", "0.49.0") == [
        "tensorrt_llm 1.2.1 is installed; nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3 documents 1.1.0",
        "nvidia-modelopt 0.49.0 is installed; trtpipe needs <0.49"]
    assert check_installed(None, None) == ["tensorrt_llm is not installed"]


def test_the_dynamo_that_make_installs_is_the_one_the_toolchain_table_pins():
    """`make dynamo` installs the CPU workers' Dynamo; `trtpipe deploy dynamo` writes images for DYNAMO: one release."""
    import re
    from pathlib import Path

    from trtpipe.trt.toolchain import DYNAMO

    makefile = (Path(__file__).resolve().parents[3] / "Makefile").read_text()
    assert re.search(r"^DYNAMO_VERSION := (\S+)$", makefile, re.M).group(1) == DYNAMO.dynamo
