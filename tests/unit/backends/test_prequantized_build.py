"""backend trtllm-pytorch, a whole build from a local checkpoint that says it is quantized: the check runs after
fetch, the manifest records the format and which TensorRT-LLM version's support table admitted it, the checkpoint is
published untouched for the LLM API; a format the LLM API does not load stops the build with the reason.

The checkpoint is the synthetic tiny one with a quantization_config added to its config.json: trtpipe decides from the
config files alone (the weights go to TensorRT-LLM untouched), and TensorRT-LLM does not run here (the machine and
tensorrt_llm are the recorded stand-ins of test_pytorch_build.py), so the float weights under a quantized label are
never loaded.
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.unit.backends import fake_tensorrt_llm as fake
from tests.unit.trt.prequant_configs import QUANTIZATION_CONFIGS
from trtpipe.backend_registry import get_backend
from trtpipe.build import build
from trtpipe.config import load_config
from trtpipe.errors import SourceError
from trtpipe.stages.synthetic import write_synthetic_checkpoint
from trtpipe.trt import preflight
from trtpipe.trt.preflight import GpuInfo, Machine

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))


@pytest.fixture
def quantized_source(tmp_path, monkeypatch):
    """A GPU-host stand-in and a config `tiny-prequant` whose source is a local checkpoint; returns (repo,
    set_format)."""
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(preflight, "detect_machine", lambda *a, **k: Machine(gpus=[H100], tensorrt_llm="1.1.0",
                                                                            nvidia_smi=True))
    fake.install(monkeypatch)
    source = tmp_path / "checkpoint"
    source.mkdir()
    write_synthetic_checkpoint("tiny-llama", source)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny-prequant.yaml").write_text(f"extends: tiny-llama\nname: tiny-prequant\nbackend: trtllm-pytorch\n"
                                                f"source: {{synthetic: null, path: {source}}}\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(configs))

    def set_format(fmt: str) -> None:
        config = json.loads((source / "config.json").read_text())
        (source / "config.json").write_text(json.dumps({**config, "quantization_config": QUANTIZATION_CONFIGS[fmt]}))

    return tmp_path / "repo", set_format


def test_a_block_fp8_checkpoint_is_built_and_published_as_it_is(quantized_source):
    repo, set_format = quantized_source
    set_format("hf-fp8-block")
    result = build(load_config("tiny-prequant"), repo)
    stages = {r.stage: r for r in result.manifest.stages}
    assert stages["quantize"].meta == {"passthrough": True}  # no ModelOpt step
    recorded = stages["configure"].meta["prequantized"]
    assert (recorded["scheme"], recorded["method"]) == ("fp8", "fp8")
    assert recorded["support_table"] == ("TensorRT-LLM 1.1.0 tensorrt_llm/_torch/model_config.py "
                                         "(ModelConfig.from_pretrained)")
    published = result.published.path / "engine"
    assert json.loads((published / "checkpoint" / "config.json").read_text())["quantization_config"] == \
        QUANTIZATION_CONFIGS["hf-fp8-block"]
    assert yaml.safe_load((published / "llm_api_options.yaml").read_text())["kv_cache_config"]["dtype"] == "auto"
    # Serving checks the GPU against the recorded format too: block FP8 has kernels from Hopper on.
    backend = get_backend("trtllm-pytorch")
    assert "compute capability 9.0 runs fp8" in backend.check_serving_machine(result.manifest, Machine(
        gpus=[H100], tensorrt_llm="1.1.0", nvidia_smi=True))
    l40s = Machine(gpus=[GpuInfo(0, "NVIDIA L40S", 46068, (8, 9))], tensorrt_llm="1.1.0", nvidia_smi=True)
    with pytest.raises(preflight.PreflightError, match="needs compute capability >= 9.0; NVIDIA L40S is 8.9"):
        backend.check_serving_machine(result.manifest, l40s)


def test_an_awq_checkpoint_stops_the_build_with_the_reason_and_publishes_nothing(quantized_source):
    repo, set_format = quantized_source
    set_format("awq")
    with pytest.raises(SourceError) as e:
        build(load_config("tiny-prequant"), repo)
    assert "the trtllm-pytorch backend cannot serve this checkpoint's quantization (awq int4 (group 128, zero " \
           "points), config.json)" in str(e.value)
    assert "use backend reference or trt-engine" in str(e.value) and e.value.exit_code == 4
    assert not (repo / "tiny-prequant-engine").exists()
    # A local source's config files are read at preflight: refused before anything is fetched.
    assert not list((repo.parent / "home").rglob("artifact.json"))
