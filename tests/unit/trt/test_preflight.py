"""Preflight refusals: the machine checks trtpipe makes before running TensorRT-LLM tools or serving an
engine. The machine is described by fakes (no nvidia-smi, no tensorrt_llm, other GPUs); these tests check
the decisions and messages, not TensorRT-LLM or a GPU."""

from __future__ import annotations

import pytest

from trtpipe.config import load_config
from trtpipe.trt.preflight import (GpuInfo, Machine, PreflightError, build_fingerprint, check_toolchain,
                                   detect_machine, parse_nvidia_smi, preflight)

IMAGE = "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3"
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
A100 = GpuInfo(0, "NVIDIA A100-SXM4-80GB", 81920, (8, 0))


def h100s(n: int) -> list[GpuInfo]:
    return [GpuInfo(i, H100.name, H100.memory_mib, H100.compute_capability) for i in range(n)]


def _toolchain(**kw):
    defaults = dict(machine=Machine(gpus=h100s(1), tensorrt_llm="1.1.0", tensorrt="10.13.3.9", modelopt="0.37.0",
                                    nvidia_smi=True),
                    which=lambda name: f"/usr/bin/{name}", is_file=lambda p: True, find_spec=lambda n: object())
    defaults.update(kw)
    return check_toolchain(**defaults)


def test_without_nvidia_smi_the_refusal_names_the_image_and_docker_command():
    with pytest.raises(PreflightError) as e:
        _toolchain(machine=Machine(), which=lambda name: None)
    msg = str(e.value)
    assert "nvidia-smi" in msg and IMAGE in msg
    assert "docker run --rm -it --gpus all" in msg and "trtpipe build CONFIG" in msg


def test_without_tensorrt_llm_the_refusal_names_the_image():
    with pytest.raises(PreflightError) as e:
        _toolchain(find_spec=lambda name: None)
    assert "the tensorrt_llm Python package" in str(e.value) and IMAGE in str(e.value)


def test_missing_example_scripts_are_named():
    with pytest.raises(PreflightError, match="quantize.py"):
        _toolchain(is_file=lambda p: not p.endswith("quantize.py"))


def test_other_tensorrt_llm_versions_are_refused():
    with pytest.raises(PreflightError, match="TensorRT-LLM 1.3.0rc20 is installed"):
        _toolchain(machine=Machine(gpus=h100s(1), tensorrt_llm="1.3.0rc20", nvidia_smi=True))


def test_modelopt_049_is_refused_when_quantizing():
    machine = Machine(gpus=h100s(1), tensorrt_llm="1.1.0", modelopt="0.49.0", nvidia_smi=True)
    with pytest.raises(PreflightError, match="no longer exports"):
        _toolchain(machine=machine, need_modelopt=True)
    assert _toolchain(machine=machine, need_modelopt=False) is machine


def test_complete_toolchain_passes():
    assert _toolchain().tensorrt_llm == "1.1.0"


def test_tp4_on_two_gpus_is_refused(llama_70b):
    with pytest.raises(PreflightError, match="needs 4 GPU\\(s\\) \\(tp=4 x pp=1\\); this machine has 2"):
        preflight(llama_70b, Machine(gpus=h100s(2)))


def test_fp8_on_ampere_is_refused(llama_8b):
    with pytest.raises(PreflightError, match="needs compute capability >= 8.9"):
        preflight(llama_8b, Machine(gpus=[A100]))


def test_engine_built_for_another_gpu_architecture_is_refused(llama_8b):
    built = {"compute_capability": "8.9", "gpu_name": "NVIDIA L40S", "tensorrt_llm": "1.1.0"}
    with pytest.raises(PreflightError, match="built for compute capability 8.9") as e:
        preflight(llama_8b, Machine(gpus=h100s(1), tensorrt_llm="1.1.0"), built=built)
    assert "--force compile" in str(e.value)


def test_engine_built_with_another_tensorrt_is_refused(llama_8b):
    machine = Machine(gpus=h100s(1), tensorrt_llm="1.1.0", tensorrt="10.13.3.9")
    built = {**build_fingerprint(machine), "tensorrt": "10.11.0.33"}
    with pytest.raises(PreflightError, match="built with tensorrt 10.11.0.33"):
        preflight(llama_8b, machine, built=built)


def test_gpu_too_small_for_the_plan_is_refused(llama_8b):
    small = GpuInfo(0, "NVIDIA L4", 23034, (8, 9))
    with pytest.raises(PreflightError, match="GiB per GPU") as e:
        preflight(llama_8b, Machine(gpus=[small]), required_bytes_per_gpu=30 << 30)
    assert "raise parallelism.tp" in str(e.value)


def test_matching_machine_passes_with_the_plan_memory(llama_8b, llama_70b):
    machine = Machine(gpus=h100s(8), tensorrt_llm="1.1.0", tensorrt="10.13.3.9")
    passed = preflight(llama_8b, machine, built=build_fingerprint(machine))
    assert passed[0] == "8 GPU(s) >= world size 1" and "toolchain and GPU match the build" in passed
    assert preflight(llama_70b, machine)[-1].endswith("GiB per GPU available")


def test_nvidia_smi_output_is_parsed():
    text = "0, NVIDIA H100 80GB HBM3, 81559, 9.0\n1, NVIDIA H100 80GB HBM3, 81559, 9.0\n"
    assert parse_nvidia_smi(text) == h100s(2)
    machine = detect_machine(run=lambda argv: text, which=lambda name: "/usr/bin/nvidia-smi")
    assert machine.nvidia_smi and len(machine.gpus) == 2
    assert build_fingerprint(machine)["compute_capability"] == "9.0"


def test_unquantized_model_passes_on_ampere():
    tiny = load_config("tiny-llama")
    assert preflight(tiny, Machine(gpus=[A100]))[0] == "1 GPU(s) >= world size 1"


def test_serving_preflight_checks_every_published_engine_against_the_machine(tmp_path, monkeypatch):
    from trtpipe.serve.process.launcher import preflight_repository

    from .fakes import publish_fake_build, write_upstream_models

    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(write_upstream_models(tmp_path / "upstream")))
    repo = tmp_path / "repo"
    publish_fake_build(repo, "llama-3.2-1b-draft", "kd", tmp_path / "d")
    publish_fake_build(repo, "llama-8b", "kt", tmp_path / "t")
    machine = Machine(gpus=h100s(1), tensorrt_llm="1.1.0", tensorrt="10.13.3.9", nvidia_smi=True)
    passed = preflight_repository(repo, machine)
    assert {line.split(":")[0] for line in passed} == {"llama-3.2-1b-draft-engine", "llama-8b-engine"}
    with pytest.raises(PreflightError, match="FP8, which needs compute capability >= 8.9"):
        preflight_repository(repo, Machine(gpus=[A100], tensorrt_llm="1.1.0", nvidia_smi=True))
    with pytest.raises(PreflightError, match="built with tensorrt_llm 1.1.0; this machine has 1.3.0"):
        preflight_repository(repo, Machine(gpus=h100s(1), tensorrt_llm="1.3.0", nvidia_smi=True))
