"""`python3 -m trtpipe.doctor` (scripts/gpu-acceptance.sh): the checks it runs inside the image before Triton loads
anything, the refusal, and the one report file. The image is played by stand-ins: the strict tensorrt_llm stand-in
(tests/unit/backends/fake_tensorrt_llm.py) at the pinned 1.1.0 or at 1.3.0, a Machine with fake GPUs, and a
tensorrt_llm template written in upstream's format here. TensorRT-LLM, its backend and gpu-smoke.sh do not run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.backends import fake_tensorrt_llm as fake
from trtpipe import doctor
from trtpipe.doctor_checks import check_engine_configs, template_names
from trtpipe.repo import tensorrtllm_tensors as T
from trtpipe.trt.preflight import GpuInfo, Machine

ROOT = Path(__file__).resolve().parents[3]
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
L40S = GpuInfo(0, "NVIDIA L40S", 46068, (8, 9))
PARAMS = ["gpt_model_type", "gpt_model_path", "max_beam_width", "batch_scheduler_policy",
          "kv_cache_free_gpu_mem_fraction", "enable_kv_cache_reuse", "enable_chunked_context",
          "exclude_input_in_output", "tokenizer_dir", "guided_decoding_backend", "xgrammar_tokenizer_info_path",
          "max_tokens_in_paged_kv_cache", "gpu_device_ids", "participant_ids"]


def upstream_template(inputs=None, outputs=None, params=None) -> str:
    """A tensorrt_llm config.pbtxt in the layout of triton_backend/all_models/inflight_batcher_llm (placeholders
    and all, so it does not parse as a ModelConfig)."""
    def tensors(names):
        return ",\n".join(f'  {{\n    name: "{n}"\n    data_type: TYPE_INT32\n    dims: [ -1 ]\n  }}' for n in names)

    inputs = [r[0] for r in T.ENGINE_INPUTS] if inputs is None else inputs
    outputs = [r[0] for r in T.ENGINE_OUTPUTS] if outputs is None else outputs
    params = PARAMS if params is None else params
    text = ('name: "tensorrt_llm"\nbackend: "${triton_backend}"\nmax_batch_size: ${triton_max_batch_size}\n'
            f"input [\n{tensors(inputs)}\n]\noutput [\n{tensors(outputs)}\n]\n")
    return text + "".join(f'parameters: {{\n  key: "{p}"\n  value: {{\n    string_value: "${{{p}}}"\n  }}\n}}\n'
                          for p in params)


def test_the_template_reader_finds_names_despite_the_placeholders_and_nested_dims():
    names = template_names(upstream_template(["input_ids", "streaming"], ["output_ids"], ["gpu_device_ids"]))
    assert names == {"input": {"input_ids", "streaming"}, "output": {"output_ids"}, "parameters": {"gpu_device_ids"}}


@pytest.fixture
def image(tmp_path, monkeypatch):
    """A published trt-engine target + draft and a published trtllm-pytorch model, and the image's files."""
    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.trt import preflight

    from .fakes import publish_fake_build, write_upstream_models

    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(write_upstream_models(tmp_path / "upstream")))
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    repo = tmp_path / "repo"
    publish_fake_build(repo, "llama-3.2-1b-draft", "kd", tmp_path / "d")
    publish_fake_build(repo, "llama-8b", "kt", tmp_path / "t")
    fake.install(monkeypatch, version="1.1.0")
    monkeypatch.setattr(preflight, "detect_machine", lambda *a, **k: Machine(gpus=[H100], tensorrt_llm="1.1.0",
                                                                            nvidia_smi=True))
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "tiny-pytorch.yaml").write_text("extends: tiny-llama\nname: tiny-pytorch\n"
                                                            "backend: trtllm-pytorch\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(tmp_path / "configs"))
    build(load_config("tiny-pytorch"), repo)
    template = tmp_path / "template" / "config.pbtxt"
    template.parent.mkdir()
    template.write_text(upstream_template())
    return repo, template


def _checks(repo, template, machine=None, release="25.12"):
    machine = machine or Machine(gpus=[H100], tensorrt_llm="1.1.0", modelopt="0.37.0", nvidia_smi=True)
    import tensorrt_llm

    return doctor.run_checks(repo, machine, tensorrt_llm, triton_release=release, template=template,
                             config_names=["llama-8b-pytorch", "llama-70b-pytorch", "tinyllama-pytorch"],
                             is_file=lambda p: True)


def test_on_the_pinned_image_every_check_passes_and_names_what_it_checked(image):
    repo, template = image
    findings = _checks(repo, template)
    assert [f for f in findings if not f.ok] == []
    subjects = {(f.check, f.subject) for f in findings}
    assert {("llm_api_yaml", "config llama-8b-pytorch"), ("engine_configs", "llama-8b-engine"),
            ("engine_configs", "llama-3.2-1b-draft-engine"), ("toolchain", "image"), ("toolchain", "triton"),
            ("toolchain", "llama-8b"), ("toolchain", "tiny-pytorch"), ("serving_preflight", str(repo))} <= subjects
    assert any(f.subject.endswith("tiny-pytorch-engine/1/engine") for f in findings if f.check == "llm_api_yaml")


def test_a_tensorrt_llm_that_spells_the_arguments_differently_is_refused_naming_the_config(image, monkeypatch):
    repo, template = image
    fake.install(monkeypatch, version="1.3.0")
    failed = {(f.check, f.subject): f.detail for f in _checks(repo, template) if not f.ok}
    assert "Invalid decoding type: Eagle" in failed[("llm_api_yaml", "config llama-8b-pytorch")]
    published = [d for (c, s), d in failed.items() if c == "llm_api_yaml" and s.endswith("/engine")]
    assert published and "written for TensorRT-LLM 1.1.0" in published[0]


def test_an_engine_config_naming_what_the_images_template_lacks_is_refused(image):
    repo, template = image
    template.write_text(upstream_template(params=[p for p in PARAMS if p != "gpu_device_ids"],
                                          inputs=[r[0] for r in T.ENGINE_INPUTS if r[0] != "retention_decode_priority"]))
    [target] = [f for f in check_engine_configs(repo, template, is_file=lambda p: True) if f.subject == "llama-8b-engine"]
    assert not target.ok
    assert "'input': ['retention_decode_priority']" in target.detail and "'parameters': ['gpu_device_ids']" in target.detail
    [missing_lib] = [f for f in check_engine_configs(repo, template, is_file=lambda p: False)][:1]
    assert "libtriton_tensorrtllm.so" in missing_lib.detail


def test_a_machine_unlike_the_build_record_or_the_table_is_refused(image):
    repo, template = image
    l40s = Machine(gpus=[L40S], tensorrt_llm="1.2.1", modelopt="0.37.0", nvidia_smi=True)
    failed = {(f.check, f.subject): f.detail for f in _checks(repo, template, machine=l40s, release="25.11")
              if not f.ok}
    assert failed[("toolchain", "image")].startswith("tensorrt_llm 1.2.1 is installed")
    assert failed[("toolchain", "triton")] == "NVIDIA_TRITON_SERVER_VERSION=25.11; the table pins 25.12"
    assert "built with TensorRT-LLM 1.1.0, this is 1.2.1" in failed[("toolchain", "llama-8b")]
    # The LLM API record names the image it was written for: a model built in 25.12 is refused in a 25.11 image.
    assert "built in the 25.12 image, this is 25.11" in failed[("toolchain", "tiny-pytorch")]
    assert ("serving_preflight", str(repo)) in failed


def test_main_refuses_before_the_smoke_test_and_writes_one_report(image, monkeypatch, tmp_path):
    repo, template = image
    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(template.parent.parent / "upstream"))
    monkeypatch.setattr(doctor, "detect_machine", lambda: Machine(gpus=[H100], tensorrt_llm="1.1.0", nvidia_smi=True))
    monkeypatch.setattr(doctor, "pytorch_config_names", lambda: ["llama-8b-pytorch"])
    monkeypatch.setattr(doctor, "run_smoke", lambda out: pytest.fail("the smoke test must not run after a refusal"))
    monkeypatch.delenv(doctor.TRITON_RELEASE_ENV, raising=False)
    out = tmp_path / "acceptance"
    assert doctor.main(["--repo", str(repo), "--out", str(out)]) == 1
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is False and report["smoke"] is None and report["pinned"]["tensorrt_llm"] == "1.1.0"
    assert {c["check"] for c in report["checks"] if not c["ok"]} >= {"toolchain", "engine_configs"}


def test_main_runs_the_smoke_test_when_every_check_passes(image, monkeypatch, tmp_path):
    repo, template = image
    monkeypatch.setattr(doctor, "run_checks", lambda *a, **k: [])
    monkeypatch.setattr(doctor, "detect_machine", lambda: Machine(gpus=[H100], tensorrt_llm="1.1.0", nvidia_smi=True))
    monkeypatch.setattr(doctor, "pytorch_config_names", lambda: [])
    monkeypatch.setattr(doctor, "run_smoke", lambda out: {"exit_code": 0, "tail": ["gpu-smoke: PASSED"]})
    assert doctor.main(["--out", str(tmp_path / "ok")]) == 0
    assert json.loads((tmp_path / "ok" / "report.json").read_text())["smoke"]["exit_code"] == 0


def test_the_acceptance_script_parses_and_hands_over_to_the_doctor():
    result = subprocess.run(["bash", "-n", str(ROOT / "scripts" / "gpu-acceptance.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = (ROOT / "scripts" / "gpu-acceptance.sh").read_text()
    assert 'exec python3 -m trtpipe.doctor --out "$ACCEPTANCE_OUT" "$@"' in text and "set -Eeuo pipefail" in text
