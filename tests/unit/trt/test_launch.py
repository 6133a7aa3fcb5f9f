"""The tritonserver / mpirun command lines trtpipe would run for a trt-engine repository (the layout of
TensorRT-LLM's launch_triton_server.py), one test per launch mode on the argv and on the configs publish writes.
Every mode runs explicit model control with the repository loaded at start; every engine names its GPUs. These
tests check the argv and the config.pbtxt parameters; they start no server, no MPI, no TensorRT-LLM."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trtpipe.errors import ConfigError
from trtpipe.repo.tensorrtllm_configs import parse_pbtxt
from trtpipe.serve.process.trt_launch import (device_ids, engine_gpu_ids, launch_mode, triton_launch_argv,
                                              triton_launch_env)

TS = "/opt/tritonserver/bin/tritonserver"
EXPLICIT_ALL = ["--model-control-mode=explicit", "--load-model=*"]


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _rank(rank: int, engines: list[str]) -> list[str]:
    argv = ["-n", "1", TS, "--model-repository=/models", "--grpc-port=8001", "--http-port=8000",
            "--metrics-port=8002", "--metrics-address=127.0.0.1", "--model-control-mode=explicit"]
    argv += [f"--load-model={m}" for m in engines] if rank else ["--load-model=*"]
    return argv + ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


def test_leader_mode_runs_one_mpirun_rank_zero_loads_everything_and_ranks_above_only_the_engine():
    argv = triton_launch_argv("/models", 4, Ports(), engine_models=["llama-70b-engine"])
    expected = ["mpirun", "--allow-run-as-root"]
    for rank in range(4):
        expected += ([":"] if rank else []) + _rank(rank, ["llama-70b-engine"])
    assert argv == expected
    assert argv.count(TS) == 4 and argv.count(":") == 3 and argv.count("--model-control-mode=explicit") == 4
    assert argv.count("--load-model=*") == 1 and argv.count("--load-model=llama-70b-engine") == 3
    assert triton_launch_env(4, 1) == {}


def test_single_mode_runs_tritonserver_directly_with_explicit_control_and_everything_loaded():
    argv = triton_launch_argv("/models", 1, Ports(http=8100, grpc=8101, metrics=8102),
                              engine_models=["llama-8b-engine"], exit_timeout_secs=30)
    assert argv == [TS, "--model-repository=/models", "--grpc-port=8101", "--http-port=8100", "--metrics-port=8102",
                    "--metrics-address=127.0.0.1", "--exit-timeout-secs=30", *EXPLICIT_ALL, "--disable-auto-complete-config",
                    "--backend-config=python,shm-region-prefix-name=prefix0_"]
    assert "mpirun" not in argv


def test_orchestrator_mode_runs_one_server_with_explicit_control_and_a_cuda_pool_off_per_gpu():
    engines = ["llama-8b-engine", "llama-3.2-1b-draft-engine"]
    assert launch_mode(1, 2) == "orchestrator"
    argv = triton_launch_argv("/models", 1, Ports(), engine_models=engines, gpu_count=2)
    assert argv == [TS, "--model-repository=/models", "--grpc-port=8001", "--http-port=8000", "--metrics-port=8002",
                    "--metrics-address=127.0.0.1", "--pinned-memory-pool-byte-size=0", "--enable-peer-access=false",
                    "--cuda-memory-pool-byte-size=0:0", "--cuda-memory-pool-byte-size=1:0", *EXPLICIT_ALL,
                    "--disable-auto-complete-config", "--backend-config=python,shm-region-prefix-name=prefix0_"]
    assert triton_launch_env(1, 2) == {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
    assert device_ids(4) == [0, 1, 2, 3] and device_ids(1, first=2) == [2]
    # Placement: rank r on GPU r; a draft (world size 1) beside the target's rank 0, as the plan assumes.
    assert engine_gpu_ids(4) == [0, 1, 2, 3] and engine_gpu_ids(1) == [0]


def test_log_file_goes_to_rank_zero_only():
    argv = triton_launch_argv("/models", 2, Ports(), engine_models=["m-engine"], log_file="/tmp/triton.log")
    assert argv.count("--log-file=/tmp/triton.log") == 1
    assert argv.index("--log-file=/tmp/triton.log") < argv.index(":")


def test_refusals_name_the_fix():
    with pytest.raises(ConfigError, match="engine model names"):
        triton_launch_argv("/models", 2, Ports())
    with pytest.raises(ConfigError, match="visible GPUs"):
        triton_launch_argv("/models", 1, Ports(), engine_models=["a", "b"])
    with pytest.raises(ConfigError, match=">= 1"):
        triton_launch_argv("/models", 0, Ports())


@pytest.fixture
def published(tmp_path, monkeypatch):
    from .fakes import write_upstream_models

    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(write_upstream_models(tmp_path / "upstream")))
    return tmp_path / "repo"


def _gpu_ids(repo, model: str) -> str:
    return parse_pbtxt((repo / model / "config.pbtxt").read_text()).parameters["gpu_device_ids"].string_value


def test_single_mode_from_the_repository_names_gpu_0_and_reloads_through_the_api(published, tmp_path):
    from trtpipe.serve.process.trt_launch import launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-3.2-1b-draft", "k", tmp_path / "s")
    plan = launch_plan(published, Ports())
    assert (plan.mode, plan.world_size, plan.placement, plan.reloads_engines) == (
        "single", 1, {"llama-3.2-1b-draft-engine": [0]}, True)
    assert plan.argv[0] == TS and plan.argv[-4:-2] == EXPLICIT_ALL
    assert _gpu_ids(published, "llama-3.2-1b-draft-engine") == "0"


def test_orchestrator_mode_from_the_repository_places_target_and_draft_by_their_gpu_device_ids(published, tmp_path):
    from trtpipe.serve.process.trt_launch import engine_models_in_repo, launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-3.2-1b-draft", "kd", tmp_path / "d")
    publish_fake_build(published, "llama-8b", "kt", tmp_path / "t")
    assert engine_models_in_repo(published) == {"llama-3.2-1b-draft-engine": 1, "llama-8b-engine": 1}
    assert _gpu_ids(published, "llama-8b-engine") == "0" and _gpu_ids(published, "llama-3.2-1b-draft-engine") == "0"
    plan = launch_plan(published, Ports())
    assert (plan.mode, plan.world_size) == ("orchestrator", 1)
    assert plan.placement == {"llama-3.2-1b-draft-engine": [0], "llama-8b-engine": [0]}
    assert plan.env == {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
    assert plan.argv[0] == TS and "--cuda-memory-pool-byte-size=0:0" in plan.argv
    assert "--cuda-memory-pool-byte-size=1:0" not in plan.argv and plan.argv[-4:-2] == EXPLICIT_ALL


def test_orchestrator_mode_refuses_an_engine_published_without_gpu_device_ids(published, tmp_path):
    from trtpipe.repo.tensorrtllm_configs import to_pbtxt
    from trtpipe.serve.process.trt_launch import launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-3.2-1b-draft", "kd", tmp_path / "d")
    publish_fake_build(published, "llama-8b", "kt", tmp_path / "t")
    path = published / "llama-8b-engine" / "config.pbtxt"
    cfg = parse_pbtxt(path.read_text())
    del cfg.parameters["gpu_device_ids"]  # as a version published before trtpipe wrote it
    path.write_text(to_pbtxt(cfg))
    with pytest.raises(ConfigError, match="llama-8b-engine name\\(s\\) no gpu_device_ids") as e:
        launch_plan(published, Ports())
    assert "--force publish" in str(e.value)


def test_leader_mode_from_the_repository_places_four_ranks_and_says_reloads_need_a_restart(published, tmp_path):
    from trtpipe.serve.process.trt_launch import launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-70b", "k", tmp_path / "s", tp=4, build={"max_batch_size": 128})
    assert _gpu_ids(published, "llama-70b-engine") == "0,1,2,3"
    plan = launch_plan(published, Ports())
    assert (plan.mode, plan.world_size, plan.engine_models) == ("leader", 4, ["llama-70b-engine"])
    assert plan.placement == {"llama-70b-engine": [0, 1, 2, 3]} and plan.reloads_engines is False
    assert plan.argv[:2] == ["mpirun", "--allow-run-as-root"] and plan.argv.count(TS) == 4
    assert plan.argv.count("--model-control-mode=explicit") == 4


def test_launch_plan_refuses_a_repository_without_engines(tmp_path):
    from trtpipe.serve.process.trt_launch import launch_plan

    with pytest.raises(ConfigError, match="no published tensorrtllm model"):
        launch_plan(tmp_path, Ports())
