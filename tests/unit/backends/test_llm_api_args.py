"""backend trtllm-pytorch: the LLM API arguments (LlmArgs YAML), the ModelOpt command and the preflight
refusals, checked against the names TensorRT-LLM's TorchLlmArgs and ModelOpt's hf_ptq.py document.

These tests check what trtpipe would write and run; they do not run TensorRT-LLM, ModelOpt or a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from trtpipe.backend_registry import get_backend
from trtpipe.config import load_config
from trtpipe.errors import ConfigError
from trtpipe.trt.llm_args import (LLM_ARGS_KEYS, RECORD_FILE, LlmApiTools, LlmArgsMismatch, llm_args, llm_args_record,
                                  llm_args_yaml, load_llm_args, quantize_command, read_llm_args)
from trtpipe.trt.preflight import GpuInfo, Machine, PreflightError, check_llm_api_toolchain, preflight

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", 81559, (9, 0))
B200 = GpuInfo(0, "NVIDIA B200", 183359, (10, 0))
TOOLS = LlmApiTools(python="python3", modelopt_examples="/opt/modelopt/examples")


def test_llama_8b_pytorch_writes_fp8_kv_block_reuse_cuda_graphs_and_eagle3_in_the_pinned_1_1_names():
    args = llm_args(load_config("llama-8b-pytorch"), has_draft=True)
    assert args == {
        "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "dtype": "bfloat16", "max_batch_size": 64,
        "max_num_tokens": 8192, "max_seq_len": 8192, "max_input_len": 7168, "max_beam_width": 1,
        # Guided decoding on (serving.guided_decoding defaults to xgrammar): TensorRT-LLM loads the tokenizer.
        "enable_chunked_prefill": True, "skip_tokenizer_init": False,
        # 1.1's KvCacheConfig has no tokens_per_block: the config's 32 is the backend's default, so nothing is written.
        "kv_cache_config": {"enable_block_reuse": True, "free_gpu_memory_fraction": 0.85, "dtype": "fp8"},
        "scheduler_config": {"capacity_scheduler_policy": "GUARANTEED_NO_EVICT"},
        "cuda_graph_config": {"max_batch_size": 64, "enable_padding": True},
        "speculative_config": {"decoding_type": "Eagle", "max_draft_len": 3, "eagle3_one_model": True,
                               "speculative_model_dir": "draft"},
        "guided_decoding_backend": "xgrammar"}


def test_written_for_1_3_the_same_config_uses_eagle3_speculative_model_and_tokens_per_block():
    args = llm_args(load_config("llama-8b-pytorch", ["engine.tokens_per_block=64"]), has_draft=True,
                    written_for="1.3.0")
    assert args["speculative_config"] == {"decoding_type": "Eagle3", "max_draft_len": 3, "speculative_model": "draft"}
    assert args["kv_cache_config"]["tokens_per_block"] == 64
    draft = llm_args(load_config("tinyllama-pytorch", ["speculation.method=draft-target",
                                                       "speculation.draft=tinyllama-pytorch"]),
                     has_draft=True, written_for="1.3.0")
    assert draft["speculative_config"]["decoding_type"] == "Draft_Target"


def test_a_tokens_per_block_the_pinned_llm_api_cannot_set_is_refused_naming_the_key_and_fix():
    with pytest.raises(ConfigError, match="engine.tokens_per_block 64: TensorRT-LLM 1.1.x's KvCacheConfig has no "
                                          "tokens_per_block") as e:
        llm_args(load_config("tinyllama-pytorch", ["engine.tokens_per_block=64"]), has_draft=False)
    assert "TensorRT-LLM >= 1.3" in str(e.value)


@pytest.mark.parametrize("name", ["llama-8b-pytorch", "llama-70b-pytorch", "tinyllama-pytorch"])
def test_every_written_key_is_a_documented_llm_args_field(name):
    args = llm_args(load_config(name), has_draft=True)
    assert set(args) <= LLM_ARGS_KEYS[""]
    for section, value in args.items():
        if isinstance(value, dict):
            assert set(value) <= LLM_ARGS_KEYS[section], section


def test_llama_70b_pytorch_is_tp4_with_ngram_speculation_and_no_draft_dir():
    args = llm_args(load_config("llama-70b-pytorch"), has_draft=False)
    assert args["tensor_parallel_size"] == 4 and args["pipeline_parallel_size"] == 1
    assert args["speculative_config"] == {"decoding_type": "NGram", "max_draft_len": 4, "max_matching_ngram_size": 3}
    assert "moe_expert_parallel_size" not in args


def test_expert_parallelism_max_utilization_and_eager_mode_map_to_their_llm_args():
    config = load_config("tinyllama-pytorch", ["parallelism.ep=2", "serving.batch_scheduler_policy=max_utilization",
                                               "llm_api.cuda_graphs=false"])
    args = llm_args(config, has_draft=False)
    assert args["moe_expert_parallel_size"] == 2
    assert args["scheduler_config"] == {"capacity_scheduler_policy": "MAX_UTILIZATION"}
    assert args["cuda_graph_config"] is None and args["kv_cache_config"]["dtype"] == "auto"


def test_guided_decoding_writes_its_backend_and_keeps_the_tokenizer_and_none_writes_neither():
    # create_py_executor asserts a tokenizer when guided_decoding_backend is set; without it, token ids suffice.
    on = llm_args(load_config("tinyllama-pytorch", ["serving.guided_decoding=llguidance"]), has_draft=False)
    assert (on["guided_decoding_backend"], on["skip_tokenizer_init"]) == ("llguidance", False)
    off = llm_args(load_config("tinyllama-pytorch", ["serving.guided_decoding=none"]), has_draft=False)
    assert "guided_decoding_backend" not in off and off["skip_tokenizer_init"] is True


def test_the_yaml_round_trips_and_its_relative_paths_resolve_against_the_engine_dir(tmp_path):
    config = load_config("llama-8b-pytorch")
    (tmp_path / "llm_api_options.yaml").write_text(llm_args_yaml(config, has_draft=True))
    (tmp_path / RECORD_FILE).write_text(llm_args_record())
    args, record = read_llm_args(tmp_path)
    assert args["speculative_config"]["speculative_model_dir"] == str(tmp_path / "draft")
    assert record == {"tensorrt_llm": "1.1.0", "dialect": "1.1",
                      "image": "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3"}
    assert yaml.safe_load((tmp_path / "llm_api_options.yaml").read_text()) == llm_args(config, has_draft=True)


def _published(tmp_path, config, written_for="1.1.0"):
    (tmp_path / "llm_api_options.yaml").write_text(llm_args_yaml(config, has_draft=True, written_for=written_for))
    (tmp_path / RECORD_FILE).write_text(llm_args_record(written_for))
    return tmp_path


# The stand-in below is strict like TensorRT-LLM's classes (tests/unit/backends/fake_llm_args.py); these tests run
# trtpipe's loader against it, not TensorRT-LLM.
def test_the_loader_turns_the_speculative_dict_into_the_installed_versions_config_object(tmp_path, monkeypatch):
    from tests.unit.backends import fake_tensorrt_llm as fake

    module = fake.install(monkeypatch, version="1.1.0")
    args = load_llm_args(module, _published(tmp_path, load_config("llama-8b-pytorch")))
    assert args["model"] == str(tmp_path / "checkpoint")
    spec = args["speculative_config"]
    assert (spec.decoding_type, spec.fields) == ("Eagle", {"max_draft_len": 3, "eagle3_one_model": True,
                                                           "speculative_model_dir": str(tmp_path / "draft")})
    llm = module.LLM(**args)  # strict: every keyword and nested key is one 1.1 declares
    assert llm.kwargs["kv_cache_config"]["dtype"] == "fp8"


def test_the_strict_stand_in_refuses_a_plain_speculative_dict_and_the_other_versions_names(tmp_path, monkeypatch):
    from tests.unit.backends import fake_llm_args
    from tests.unit.backends import fake_tensorrt_llm as fake

    config = load_config("llama-8b-pytorch")
    module = fake.install(monkeypatch, version="1.1.0")
    with pytest.raises(fake_llm_args.ValidationError, match="expected a DecodingConfig object"):
        module.LLM(model="/m", **llm_args(config, has_draft=True))  # what LLM(**yaml) used to do
    with pytest.raises(fake_llm_args.ValidationError, match="Invalid decoding type: Eagle3"):
        module.llmapi.llm_args.update_llm_args_with_extra_dict({}, llm_args(config, has_draft=True,
                                                                            written_for="1.3.0"))
    with pytest.raises(fake_llm_args.ValidationError, match="kv_cache_config: extra fields not permitted: "
                                                            "tokens_per_block"):
        module.LLM(model="/m", kv_cache_config={"tokens_per_block": 32})
    with pytest.raises(fake_llm_args.ValidationError, match="SamplingParams: extra fields not permitted: beam"):
        module.SamplingParams(max_tokens=1, beam=2)
    fake.install(monkeypatch, version="1.3.0")
    with pytest.raises(fake_llm_args.ValidationError, match="Invalid decoding type: Eagle"):
        module.llmapi.llm_args.update_llm_args_with_extra_dict({}, llm_args(config, has_draft=True))


def test_the_loader_refuses_arguments_written_for_a_version_that_spells_them_differently(tmp_path, monkeypatch):
    from tests.unit.backends import fake_tensorrt_llm as fake

    published = _published(tmp_path, load_config("llama-8b-pytorch"), written_for="1.1.0")
    module = fake.install(monkeypatch, version="1.3.0rc27")
    with pytest.raises(LlmArgsMismatch, match="written for TensorRT-LLM 1.1.0 \\(names of 1.1.x\\); this is "
                                              "TensorRT-LLM 1.3.0rc27 \\(names of 1.3.x\\)") as e:
        load_llm_args(module, published)
    assert "tritonserver:25.12-trtllm-python-py3" in str(e.value)
    (published / RECORD_FILE).unlink()
    with pytest.raises(LlmArgsMismatch, match="do not say which TensorRT-LLM"):
        load_llm_args(fake.install(monkeypatch, version="1.1.0"), published)


def test_modelopt_exports_a_quantized_hf_checkpoint_with_the_configs_seed_and_names_the_kv_format_always():
    cmd = quantize_command(load_config("llama-8b-pytorch", ["quantization.calibration.seed=7"]), Path("/hf"),
                           Path("/out"), TOOLS)
    # hf_ptq.py has no seed flag: trtpipe.trt.seeded_ptq runs it with its RAND_SEED set to the config's seed.
    assert cmd.argv == ["python3", "-m", "trtpipe.trt.seeded_ptq", "--seed", "7",
                        "/opt/modelopt/examples/llm_ptq/hf_ptq.py", "--pyt_ckpt_path", "/hf",
                        "--export_path", "/out", "--qformat", "fp8", "--kv_cache_qformat", "fp8",
                        "--dataset", "cnn_dailymail", "--calib_size", "512"]
    awq = quantize_command(load_config("tinyllama-pytorch", ["quantization.format=int4_awq"]), Path("/hf"),
                           Path("/out"), TOOLS)
    # hf_ptq.py would quantize the KV cache to fp8 by default: "none" keeps it as configured.
    assert awq.argv[awq.argv.index("--qformat") + 1:awq.argv.index("--qformat") + 4] == \
        ["int4_awq", "--kv_cache_qformat", "none"]


def test_the_quant_format_table_is_per_backend_and_refusals_name_who_accepts():
    assert set(get_backend("trtllm-pytorch").quant_formats) == {"fp8", "nvfp4", "int4_awq"}
    with pytest.raises(ConfigError, match="'nvfp4' needs backend trtllm-pytorch; the trt-engine backend supports"):
        load_config("llama-8b", ["quantization.format=nvfp4"])
    with pytest.raises(ConfigError, match="'int8_sq' needs backend trt-engine; the trtllm-pytorch backend supports"):
        load_config("llama-8b-pytorch", ["quantization.format=int8_sq"])


def test_engine_side_speculation_is_refused_on_the_engine_path_and_llm_api_settings_elsewhere():
    with pytest.raises(ConfigError, match="speculation.method 'eagle3' is not served by the trt-engine backend"):
        load_config("llama-8b", ["speculation.method=eagle3"])
    with pytest.raises(ConfigError, match="llm_api and parallelism.ep are settings of the TensorRT-LLM LLM API"):
        load_config("tiny-llama", ["llm_api.cuda_graphs=false"])


def test_the_spec_tells_the_frontend_the_engine_speculates_and_names_no_draft_model():
    spec = get_backend("trtllm-pytorch").serving_spec(load_config("llama-8b-pytorch"))
    # The decoding_type written for the pinned TensorRT-LLM 1.1.0: EAGLE-3 is "Eagle" (with eagle3_one_model) there.
    assert spec.engine_speculation == "Eagle" and spec.draft_model_name is None and spec.max_draft_len == 0
    assert get_backend("trt-engine").serving_spec(load_config("llama-8b")).engine_speculation is None


def _machine(*gpus, trtllm="1.1.0", modelopt="0.37.0"):
    return Machine(gpus=list(gpus), tensorrt_llm=trtllm, modelopt=modelopt, nvidia_smi=bool(gpus))


def test_preflight_refuses_no_gpu_and_old_tensorrt_llm_naming_the_image():
    config = load_config("tinyllama-pytorch")
    with pytest.raises(PreflightError) as e:
        check_llm_api_toolchain(config, machine=Machine(), find_spec=lambda n: None)
    assert "nvidia-smi" in str(e.value) and "the tensorrt_llm Python package" in str(e.value)
    assert "nvcr.io/nvidia/tritonserver:25.12-trtllm-python-py3" in str(e.value)
    with pytest.raises(PreflightError, match="TensorRT-LLM 1.0.0 is installed; backend trtllm-pytorch needs >= 1.1"):
        check_llm_api_toolchain(config, machine=_machine(H100, trtllm="1.0.0"), find_spec=lambda n: object())
    assert check_llm_api_toolchain(config, machine=_machine(H100, trtllm="1.1.0"), find_spec=lambda n: object())
    assert check_llm_api_toolchain(config, machine=_machine(H100, trtllm="1.3.0rc5"), find_spec=lambda n: object())


def test_preflight_refuses_quantizing_without_modelopt_or_its_script():
    config = load_config("llama-8b-pytorch")
    with pytest.raises(PreflightError, match="nvidia-modelopt is not installed"):
        check_llm_api_toolchain(config, machine=_machine(H100, modelopt=None), find_spec=lambda n: object())
    with pytest.raises(PreflightError, match="hf_ptq.py is not here"):
        check_llm_api_toolchain(config, machine=_machine(H100), find_spec=lambda n: object(),
                                is_file=lambda p: False, tools=TOOLS)


def test_nvfp4_needs_blackwell_and_70b_needs_four_gpus():
    nvfp4 = load_config("tinyllama-pytorch", ["quantization.format=nvfp4"])
    with pytest.raises(PreflightError, match="NVFP4, which needs compute capability >= 10.0"):
        preflight(nvfp4, _machine(H100))
    assert preflight(nvfp4, _machine(B200))
    with pytest.raises(PreflightError, match="needs 4 GPU"):
        preflight(load_config("llama-70b-pytorch"), _machine(H100))
