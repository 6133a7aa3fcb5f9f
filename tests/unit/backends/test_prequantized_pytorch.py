"""backend trtllm-pytorch and checkpoints that come quantized: which formats go to the LLM API as they are (no ModelOpt
step), checked against a recorded stand-in of how TensorRT-LLM 1.1's PyTorch backend reads a checkpoint's own
quantization (tests/unit/backends/fake_model_config.py); the LLM API arguments written for them, loaded through the
strict LLM API stand-in (tests/unit/backends/fake_llm_args.py); the refusals, with their messages. These tests do not
run TensorRT-LLM or a GPU.
"""

from __future__ import annotations

import pytest
import yaml

from tests.unit.backends import fake_model_config as loader
from tests.unit.trt.prequant_configs import FORMATS, write_checkpoint_configs
from trtpipe.backend_registry import capabilities, check_prequantized
from trtpipe.cache import Artifact
from trtpipe.config import load_config
from trtpipe.engine.checkpoint_quant import read_checkpoint_quant
from trtpipe.errors import ConfigError, SourceError
from trtpipe.stages.steps import run_steps
from trtpipe.trt.llm_args import OPTIONS_FILE, load_llm_args
from trtpipe.trt.prequantized import read_checked

SERVED_AS_THEY_ARE = {"modelopt-fp8": "FP8", "modelopt-fp8-kv": "FP8", "hf-fp8-block": "FP8_BLOCK_SCALES",
                      "modelopt-nvfp4": "NVFP4", "modelopt-w4a16-awq": "W4A16_AWQ"}


@pytest.fixture
def config():
    return load_config("llama-8b-pytorch", ["quantization=null", "speculation=null"])


def _configure(config, hf, out):
    from trtpipe.backends import tensorrt_llm_pytorch as backend

    fetch = Artifact("fetch", "f" * 64, hf)
    return run_steps(backend._configure_plan(config, {"fetch": fetch, "quantize": fetch}, out))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_trtllm_pytorch_row_agrees_with_the_recorded_loader(fmt, config, tmp_path):
    """Accepted exactly when TensorRT-LLM 1.1's loader builds a QuantConfig from the checkpoint's files; the rest it
    would load as full-precision weights (quant_algo None) or fail on."""
    hf = write_checkpoint_configs(tmp_path / fmt, fmt)
    quant = read_checkpoint_quant(hf)
    try:
        accepted = quant is not None and check_prequantized("trtllm-pytorch", quant, config) is not None
    except SourceError:
        accepted = False
    try:
        algo = loader.quant_config(hf)["quant_algo"]
    except loader.LoaderAssertion:
        algo = None
    assert accepted == (algo is not None)
    assert SERVED_AS_THEY_ARE.get(fmt) == algo


@pytest.mark.parametrize("fmt", sorted(SERVED_AS_THEY_ARE))
def test_a_served_format_goes_to_the_llm_api_as_it_is(fmt, config, tmp_path, monkeypatch):
    from tests.unit.backends import fake_tensorrt_llm as fake
    from trtpipe.backends import tensorrt_llm_pytorch as backend

    quantize = next(s for s in backend.STAGES if s.name == "quantize")
    assert quantize.passthrough(config) == "no quantization: the LLM API loads the checkpoint as it is"
    hf = write_checkpoint_configs(tmp_path / "fetch", fmt)
    meta = _configure(config, hf, tmp_path / "engine")
    assert meta["prequantized"]["method"] == read_checkpoint_quant(hf).method
    assert meta["prequantized"]["support_table"] == capabilities("trtllm-pytorch").prequantized_source
    assert "TensorRT-LLM 1.1.0 tensorrt_llm/_torch/model_config.py" in meta["prequantized"]["support_table"]
    # The checkpoint's files are what the LLM API loads: config.json and hf_quant_config.json unchanged.
    assert (tmp_path / "engine" / "checkpoint" / "config.json").read_bytes() == (hf / "config.json").read_bytes()
    assert loader.quant_config(tmp_path / "engine" / "checkpoint")["quant_algo"] == SERVED_AS_THEY_ARE[fmt]
    written = yaml.safe_load((tmp_path / "engine" / OPTIONS_FILE).read_text())
    # Nothing that quantizes: no quant_config among the arguments; the KV cache as the checkpoint asks.
    assert "quant_config" not in written and "calib_config" not in written
    assert written["kv_cache_config"]["dtype"] == ("fp8" if fmt == "modelopt-fp8-kv" else "auto")
    module = fake.install(monkeypatch, version="1.1.0")
    module.LLM(**load_llm_args(module, tmp_path / "engine"))  # strict: every name is one TorchLlmArgs 1.1 declares


@pytest.mark.parametrize("fmt, why, fix", [
    ("awq", "not in the trtllm-pytorch backend's list (TensorRT-LLM 1.1.0 tensorrt_llm/_torch/model_config.py",
     "use backend reference or trt-engine"),
    ("gptq", "not in the trtllm-pytorch backend's list", "use backend reference or trt-engine"),
    ("compressed-tensors-fp8", "not in the trtllm-pytorch backend's list", "use backend reference,"),
    ("hf-fp8-tensor", "raw.weight_block_size is None: load_hf_quant_config reads FP8 blocks only from an explicit "
                      "weight_block_size", "use backend reference,"),
    ("hf-fp8-no-block-key", "raw.weight_block_size is None", "use backend reference,"),
    ("hf-fp8-block-64", "raw.weight_block_size is [64, 64]", "use backend reference,"),
    ("modelopt-fp8-config-json-only", "found_in is 'config.json': TensorRT-LLM 1.1.0 reads a ModelOpt export's "
                                      "quantization from hf_quant_config.json only", "use backend reference,"),
])
def test_formats_the_llm_api_does_not_load_are_refused_at_build(fmt, why, fix, config, tmp_path):
    hf = write_checkpoint_configs(tmp_path / fmt, fmt)
    with pytest.raises(SourceError) as e:
        _configure(config, hf, tmp_path / "engine")
    assert e.value.exit_code == 4
    message = str(e.value)
    assert "the trtllm-pytorch backend cannot serve this checkpoint's quantization" in message
    assert why in message and fix in message
    assert ("trtllm-pytorch serves ModelOpt FP8, FP8 with 128x128 weight blocks, ModelOpt NVFP4, "
            "ModelOpt W4A16_AWQ") in message
    assert not (tmp_path / "engine").exists()  # refused before anything is written


def test_modelopt_is_not_run_on_a_checkpoint_that_is_already_quantized(tmp_path):
    from trtpipe.backends import tensorrt_llm_pytorch as backend

    config = load_config("llama-8b-pytorch", ["speculation=null"])  # quantization: fp8 through ModelOpt
    hf = write_checkpoint_configs(tmp_path / "fetch", "modelopt-fp8")
    with pytest.raises(ConfigError, match=r"already quantized \(modelopt:FP8 fp8 e4m3 .*format fp8 would quantize it "
                                          r"again"):
        backend._quantize_plan(config, {"fetch": Artifact("fetch", "f" * 64, hf)}, tmp_path / "q")
    full = write_checkpoint_configs(tmp_path / "full", "full-precision")
    steps = backend._quantize_plan(config, {"fetch": Artifact("fetch", "f" * 64, full)}, tmp_path / "q")
    assert "hf_ptq.py" in " ".join(steps[1].command.argv)  # a full-precision checkpoint is still quantized


def test_read_checked_returns_the_row_that_serves_the_checkpoint(config, tmp_path):
    quant, row = read_checked(config, write_checkpoint_configs(tmp_path / "a", "modelopt-fp8-kv"))
    assert (quant.scheme, quant.kv_cache) == ("fp8", "fp8") and "hf_quant_config.json quant_algo FP8" in row.how
    assert read_checked(config, write_checkpoint_configs(tmp_path / "b", "full-precision")) == (None, None)


@pytest.mark.parametrize("fmt, gpu, refused", [
    ("modelopt-nvfp4", "H100", "needs compute capability >= 10.0; NVIDIA H100 80GB HBM3 is 9.0"),
    ("hf-fp8-block", "L40S", "needs compute capability >= 9.0; NVIDIA L40S is 8.9"),
    ("modelopt-fp8", "A100", "needs compute capability >= 8.9; NVIDIA A100-SXM4-80GB is 8.0"),
    ("modelopt-fp8", "H100", None),
    ("modelopt-nvfp4", "B200", None),
])
def test_the_gpu_must_have_kernels_for_the_checkpoints_format(fmt, gpu, refused, config, tmp_path, monkeypatch):
    from trtpipe.trt import preflight
    from trtpipe.trt.preflight import GpuInfo, Machine, PreflightError

    gpus = {"H100": GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0)),
            "L40S": GpuInfo(0, "NVIDIA L40S", 46068, (8, 9)),
            "A100": GpuInfo(0, "NVIDIA A100-SXM4-80GB", 81920, (8, 0)),
            "B200": GpuInfo(0, "NVIDIA B200", 183359, (10, 0))}
    monkeypatch.setattr(preflight, "detect_machine", lambda *a, **k: Machine(gpus=[gpus[gpu]], tensorrt_llm="1.1.0",
                                                                            nvidia_smi=True))
    hf = write_checkpoint_configs(tmp_path / "fetch", fmt)
    if refused:
        with pytest.raises(PreflightError, match=refused) as e:
            _configure(config, hf, tmp_path / "engine")
        assert e.value.exit_code == 5 and "serve it on a newer GPU" in str(e.value)
    else:
        assert _configure(config, hf, tmp_path / "engine")["prequantized"]["min_compute_capability"]
