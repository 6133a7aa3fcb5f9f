"""The GPU worker's command and engine arguments, checked against what reads them, without a GPU:

- the worker's and the frontend's argument lists parsed by Dynamo 1.6.1's own parsers (ai-dynamo and
  ai-dynamo-runtime installed, as the dynamo extra installs them; TensorRT-LLM is not: the one name the worker's
  parser reads from it, BuildConfig's field defaults, is stood in for);
- each role's engine arguments loaded the way Dynamo's worker loads --extra-engine-args (TensorRT-LLM's
  update_llm_args_with_extra_dict, then TorchLlmArgs) by the strict TensorRT-LLM stand-in
  (tests/unit/backends/fake_tensorrt_llm.py) posing as Dynamo's TensorRT-LLM 1.3.0rc29.

None of this runs TensorRT-LLM or Dynamo's worker: a GPU acceptance run is what would."""

from __future__ import annotations

import argparse
import sys
import types

import pytest
import yaml

from tests.unit.backends import fake_tensorrt_llm
from tests.unit.backends.fake_llm_args import ValidationError
from trtpipe.deploy import source
from trtpipe.deploy.dynamo_worker import (AGGREGATED, DECODE, PREFILL, ROLES, engine_args, engine_args_yaml,
                                          frontend_argv, worker_argv)
from trtpipe.trt.llm_args import LLM_ARGS_KEYS, llm_args
from trtpipe.trt.toolchain import DYNAMO, PINNED

CONFIGS = ["llama-8b-pytorch", "llama-70b-pytorch", "tinyllama-pytorch"]


def load_as_dynamo_worker(tensorrt_llm, path_text: str, checkpoint: str):
    """What dynamo.trtllm does with --model and --extra-engine-args (workers/llm_worker.py): its own arguments,
    the YAML merged over them by TensorRT-LLM's loader, then the LLM's arguments validated."""
    loader = tensorrt_llm.llmapi.llm_args
    merged = loader.update_llm_args_with_extra_dict({"model": checkpoint}, yaml.safe_load(path_text), "args.yaml")
    return loader.TorchLlmArgs(**merged)


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("role", ROLES)
def test_each_roles_engine_args_load_in_dynamos_tensorrt_llm(config, role, monkeypatch):
    tensorrt_llm = fake_tensorrt_llm.install(monkeypatch, version=DYNAMO.tensorrt_llm)
    artifact = source.from_config(config, 1)
    loaded = load_as_dynamo_worker(tensorrt_llm, engine_args_yaml(artifact, role), artifact.checkpoint)
    assert loaded.kwargs["model"] == artifact.checkpoint


def test_the_versions_own_options_file_would_not_load_there_which_is_why_the_deployment_carries_its_own(monkeypatch):
    # The published llm_api_options.yaml is written for the Triton image's TensorRT-LLM (1.1.0): EAGLE-3 is
    # `Eagle` + speculative_model_dir there, and 1.3's parser has no such decoding type.
    tensorrt_llm = fake_tensorrt_llm.install(monkeypatch, version=DYNAMO.tensorrt_llm)
    artifact = source.from_config("llama-8b-pytorch", 1)
    own = yaml.safe_dump(llm_args(artifact.config, has_draft=True, written_for=PINNED.tensorrt_llm))
    with pytest.raises(ValidationError, match="Invalid decoding type: Eagle"):
        load_as_dynamo_worker(tensorrt_llm, own, artifact.checkpoint)


def test_engine_args_are_trtpipes_llm_args_plus_only_the_disaggregation_keys():
    artifact = source.from_config("llama-8b-pytorch", 4)
    for role in ROLES:
        args = engine_args(artifact, role)
        extra = set(args) - LLM_ARGS_KEYS[""]
        assert extra == ({"cache_transceiver_config", "disable_overlap_scheduler"} if role == PREFILL else
                         {"cache_transceiver_config"} if role == DECODE else set()), role
        # Dynamo's image reads TensorRT-LLM 1.3's names; the draft is found in the published version.
        assert args["speculative_config"]["decoding_type"] == "Eagle3"
        assert args["speculative_config"]["speculative_model"] == \
            "/var/lib/trtpipe/model_repository/llama-8b-pytorch-engine/4/engine/draft"
        assert args["kv_cache_config"]["tokens_per_block"] == artifact.config.engine.tokens_per_block


def test_the_flags_repeat_the_engine_args_so_the_merge_cannot_contradict_them():
    artifact = source.from_config("llama-70b-pytorch", 1)
    argv = worker_argv(artifact, AGGREGATED)
    flag = {argv[i]: argv[i + 1] for i in range(3, len(argv) - 1) if argv[i].startswith("--")}
    args = engine_args(artifact, AGGREGATED)
    assert int(flag["--tensor-parallel-size"]) == args["tensor_parallel_size"] == 4
    assert int(flag["--kv-block-size"]) == args["kv_cache_config"]["tokens_per_block"]
    assert int(flag["--max-batch-size"]) == args["max_batch_size"]
    assert int(flag["--max-seq-len"]) == args["max_seq_len"]
    assert float(flag["--free-gpu-memory-fraction"]) == args["kv_cache_config"]["free_gpu_memory_fraction"]
    assert flag["--guided-decoding-backend"] == args["guided_decoding_backend"]


# --- Dynamo 1.6.1's own parsers -------------------------------------------------------------------------------------

@pytest.fixture
def dynamo_trtllm_args(monkeypatch):
    """dynamo.trtllm.args of the installed ai-dynamo, importable without TensorRT-LLM: its parser reads only
    BuildConfig's field defaults from it (backend_args.py), given here as the values it would read."""
    pytest.importorskip("dynamo._core", reason="ai-dynamo-runtime is not installed (the dynamo extra installs it)")
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.BuildConfig = type("BuildConfig", (), {"model_fields": {
        name: types.SimpleNamespace(default=default)
        for name, default in {"max_batch_size": 2048, "max_num_tokens": 8192, "max_seq_len": None,
                              "max_beam_width": 1}.items()}})
    module = types.ModuleType("tensorrt_llm")
    module.llmapi = llmapi
    monkeypatch.setitem(sys.modules, "tensorrt_llm", module)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    for name in [m for m in sys.modules if m.startswith("dynamo.trtllm")]:
        monkeypatch.delitem(sys.modules, name)
    from importlib import import_module, metadata

    assert metadata.version("ai-dynamo") == DYNAMO.dynamo, "the installed ai-dynamo is not the pinned one"
    return import_module("dynamo.trtllm.args")


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("role", ROLES)
def test_the_worker_command_parses_with_dynamo_1_6_1s_worker_parser(config, role, dynamo_trtllm_args):
    artifact = source.from_config(config, 1)
    argv = worker_argv(artifact, role)
    assert argv[:3] == ["python3", "-m", "dynamo.trtllm"]
    parsed = dynamo_trtllm_args.parse_args(argv[3:])  # exits on a flag it does not know
    c = artifact.config
    assert (parsed.model, parsed.served_model_name) == (artifact.checkpoint, c.name)
    assert parsed.extra_engine_args == f"/etc/trtpipe/dynamo/{role}.yaml"
    assert parsed.disaggregation_mode.value == {"agg": "prefill_and_decode", "prefill": "prefill",
                                                "decode": "decode"}[role]
    assert (parsed.tensor_parallel_size, parsed.pipeline_parallel_size) == (c.parallelism.tp, c.parallelism.pp)
    assert parsed.kv_block_size == c.engine.tokens_per_block
    assert (parsed.max_batch_size, parsed.max_num_tokens, parsed.max_seq_len) == \
        (c.engine.max_batch_size, c.engine.max_num_tokens, c.engine.max_seq_len)
    assert parsed.publish_kv_events is (role != DECODE)


def test_every_flag_is_the_parsers_own_name_not_an_obsolete_alias(dynamo_trtllm_args):
    from dynamo.common.configuration.groups.runtime_args import DynamoRuntimeArgGroup
    from dynamo.trtllm.backend_args import DynamoTrtllmArgGroup

    parser = argparse.ArgumentParser()
    DynamoRuntimeArgGroup().add_arguments(parser)
    DynamoTrtllmArgGroup().add_arguments(parser)
    argv = worker_argv(source.from_config("llama-8b-pytorch", 1), PREFILL)
    flags = [a for a in argv[3:] if a.startswith("--")]
    for flag in flags:
        action = parser._option_string_actions[flag]
        assert action.option_strings[0] == flag, f"{flag} is an alias of {action.option_strings[0]}"
    assert "--model-path" not in flags and "--disaggregation-strategy" not in flags


def test_a_misspelled_flag_is_refused_by_that_parser(dynamo_trtllm_args):
    with pytest.raises(SystemExit):
        dynamo_trtllm_args.parse_args(["--model", "/m", "--kv-blocksize", "32"])


def test_the_frontend_command_parses_with_dynamo_1_6_1s_frontend_parser(dynamo_trtllm_args):
    from dynamo.frontend.frontend_args import FrontendArgGroup, FrontendConfig

    argv = frontend_argv()
    assert argv[:3] == ["python3", "-m", "dynamo.frontend"]
    parser = argparse.ArgumentParser()
    FrontendArgGroup().add_arguments(parser)
    config = FrontendConfig.from_cli_args(parser.parse_args(argv[3:]))
    config.validate()
    assert (config.http_port, config.router_mode) == (8000, "kv")
