"""backend trtllm-pytorch end to end without a GPU: build and publish a real (tiny, synthetic) checkpoint, then
load the published Triton Python model against a recorded stand-in for tensorrt_llm and Triton's
triton_python_backend_utils, and send it one request.

The machine (a GPU, an importable tensorrt_llm) is a stand-in and TensorRT-LLM does not run: these tests check
what trtpipe writes (repository layout, LLM API YAML, config.pbtxt, spec.json) and what its Python model asks
of tensorrt_llm.LLM, not TensorRT-LLM itself.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types

import numpy as np
import pytest
import yaml

from tests.unit.backends import fake_tensorrt_llm as fake
from trtpipe.build import build
from trtpipe.config import load_config
from trtpipe.repo.model_config import parse_pbtxt
from trtpipe.trt import preflight
from trtpipe.trt.llm_args import RECORD_FILE, LlmArgsMismatch
from trtpipe.trt.preflight import GpuInfo, Machine

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))


@pytest.fixture
def gpu_host(tmp_path, monkeypatch):
    """TRTPIPE_HOME in tmp, a stand-in GPU machine and tensorrt_llm module; returns the repository path."""
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(preflight, "detect_machine", lambda *a, **k: Machine(gpus=[H100], tensorrt_llm="1.1.0",
                                                                            nvidia_smi=True))
    fake.install(monkeypatch)
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny-pytorch.yaml").write_text("extends: tiny-llama\nname: tiny-pytorch\nbackend: trtllm-pytorch\n"
                                               "speculation: {method: ngram, max_draft_len: 3}\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(configs))
    return tmp_path / "repo"


def test_build_publishes_checkpoint_llm_args_python_model_and_a_spec_without_a_draft(gpu_host):
    result = build(load_config("tiny-pytorch"), gpu_host)
    assert [r.stage for r in result.manifest.stages] == ["fetch", "quantize", "configure"]
    version = result.published.path
    assert (version / "model.py").read_text().startswith('"""Triton Python-backend model for backend trtllm-pytorch')
    assert (version / "engine" / "checkpoint" / "config.json").is_file()
    assert (version / "engine" / "checkpoint" / "model.safetensors").is_file()
    args = yaml.safe_load((version / "engine" / "llm_api_options.yaml").read_text())
    assert args["speculative_config"] == {"decoding_type": "NGram", "max_draft_len": 3, "max_matching_ngram_size": 2}
    spec = json.loads((version / "spec.json").read_text())
    assert spec["engine_speculation"] == "NGram" and spec["draft_model_name"] is None and spec["max_draft_len"] == 0
    cfg = parse_pbtxt((gpu_host / "tiny-pytorch-engine" / "config.pbtxt").read_text())
    assert cfg.backend == "python" and cfg.model_transaction_policy.decoupled
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_MODEL and list(cfg.parameters) == ["engine_dir"]
    assert list(cfg.version_policy.specific.versions) == [1]
    # A second build is a no-op: every stage cached, the live version unchanged.
    again = build(load_config("tiny-pytorch"), gpu_host)
    assert again.published.unchanged and all(r.cached for r in again.manifest.stages)


def test_build_without_tensorrt_llm_stops_before_any_work_naming_the_image(gpu_host, monkeypatch):
    monkeypatch.delitem(sys.modules, "tensorrt_llm")
    with pytest.raises(preflight.PreflightError, match="tritonserver:25.12-trtllm-python-py3"):
        build(load_config("tiny-pytorch"), gpu_host)
    assert not gpu_host.exists()


class _Tensor:
    def __init__(self, name, value):
        self.name, self.value = name, value

    def as_numpy(self):
        return self.value


class _Request:
    def __init__(self, inputs, rid):
        self.inputs, self.rid, self.responses = inputs, rid, []

    def requested_output_names(self):
        return ["output_ids", "sequence_length"]

    def get_response_sender(self):
        request = self

        class Sender:
            def send(self, response=None, flags=0):
                request.responses.append((response, flags))

        return Sender()

    def is_cancelled(self):
        return False

    def request_id(self):
        return self.rid


def _pb_utils():
    pb = types.ModuleType("triton_python_backend_utils")
    pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
    pb.Tensor = _Tensor
    pb.TritonError = lambda message: message

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.output_tensors, self.error = list(output_tensors), error

    pb.InferenceResponse = InferenceResponse
    pb.get_input_tensor_by_name = lambda request, name: (_Tensor(name, request.inputs[name])
                                                         if name in request.inputs else None)
    return pb


def test_the_published_python_model_loads_llm_from_the_version_and_streams_token_ids(gpu_host, monkeypatch):
    version = build(load_config("tiny-pytorch"), gpu_host).published.path
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _pb_utils())
    spec = importlib.util.spec_from_file_location("published_llm_api_model", version / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    model.initialize({"model_repository": str(version.parent), "model_version": version.name,
                      "model_config": "{}", "model_name": "tiny-pytorch-engine"})
    [llm] = fake.LLM.instances
    assert llm.kwargs["model"] == str(version / "engine" / "checkpoint")
    # Guided decoding is on by default, so TensorRT-LLM loads the checkpoint's tokenizer (its grammars need it).
    assert llm.kwargs["guided_decoding_backend"] == "xgrammar" and llm.kwargs["skip_tokenizer_init"] is False
    assert llm.kwargs["kv_cache_config"]["enable_block_reuse"] is True
    # The loader (update_llm_args_with_extra_dict) made the n-gram config object the strict LLM(...) accepts.
    spec_config = llm.kwargs["speculative_config"]
    assert (spec_config.decoding_type, spec_config.fields) == ("NGram", {"max_draft_len": 3, "max_matching_ngram_size": 2})
    request = _Request({"input_ids": np.array([[5, 6, 7]], dtype=np.int32),
                        "request_output_len": np.array([[2]], dtype=np.int32),
                        "streaming": np.array([[True]])}, "req-1")
    assert model.execute([request]) is None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (request.responses and request.responses[-1][1]):
        time.sleep(0.005)
    tokens = [[t.value.reshape(-1).tolist() for t in r.output_tensors if t.name == "output_ids"][0]
              for r, _ in request.responses]
    assert tokens == [[100], [101]] and [flags for _, flags in request.responses] == [0, 1]
    assert llm.calls[0][0] == [5, 6, 7]
    model.finalize()
    assert llm.is_shut_down


@pytest.mark.parametrize("installed,error,message", [
    ("1.0.0", preflight.PreflightError, "TensorRT-LLM 1.0.0 is installed"),
    # 1.3 spells the arguments differently (Eagle3, speculative_model): refused before LLM(...) is called.
    ("1.3.0", LlmArgsMismatch, "written for TensorRT-LLM 1.1.0 \\(names of 1.1.x\\); this is TensorRT-LLM 1.3.0")])
def test_the_python_model_refuses_a_tensorrt_llm_that_cannot_read_its_arguments(gpu_host, monkeypatch, installed,
                                                                                 error, message):
    version = build(load_config("tiny-pytorch"), gpu_host).published.path
    assert json.loads((version / "engine" / RECORD_FILE).read_text())["tensorrt_llm"] == "1.1.0"
    fake.install(monkeypatch, version=installed)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _pb_utils())
    spec = importlib.util.spec_from_file_location(f"published_llm_api_model_{installed}", version / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(error, match=message):
        module.TritonPythonModel().initialize({"model_repository": str(version.parent),
                                               "model_version": version.name})
    assert fake.LLM.instances == []
