"""The tritonserver / mpirun command lines trtpipe would run for a trt-engine repository (the layout of
TensorRT-LLM's launch_triton_server.py). These tests check the argv; they start no server and no MPI."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trtpipe.errors import ConfigError
from trtpipe.serve.process.trt_launch import device_ids, launch_mode, triton_launch_argv, triton_launch_env

TS = "/opt/tritonserver/bin/tritonserver"


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


def _rank(rank: int, loads: list[str]) -> list[str]:
    argv = ["-n", "1", TS, "--model-repository=/models", "--grpc-port=8001", "--http-port=8000",
            "--metrics-port=8002"]
    if rank:
        argv += ["--model-control-mode=explicit"] + [f"--load-model={m}" for m in loads]
    return argv + ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


def test_tp4_runs_one_mpirun_in_leader_mode_with_one_server_per_rank():
    argv = triton_launch_argv("/models", 4, Ports(), engine_models=["llama-70b-engine"])
    expected = ["mpirun", "--allow-run-as-root"]
    for rank in range(4):
        expected += ([":"] if rank else []) + _rank(rank, ["llama-70b-engine"])
    assert argv == expected
    assert argv.count(TS) == 4 and argv.count(":") == 3
    # Only rank 0 loads the whole repository (pre/postprocessing, ensemble) and serves HTTP/gRPC.
    assert argv.count("--load-model=llama-70b-engine") == 3
    assert triton_launch_env(4, 1) == {}


def test_world_size_one_runs_tritonserver_directly():
    argv = triton_launch_argv("/models", 1, Ports(http=8100, grpc=8101, metrics=8102),
                              engine_models=["llama-8b-engine"], exit_timeout_secs=30)
    assert argv == [TS, "--model-repository=/models", "--grpc-port=8101", "--http-port=8100", "--metrics-port=8102",
                    "--exit-timeout-secs=30", "--disable-auto-complete-config",
                    "--backend-config=python,shm-region-prefix-name=prefix0_"]
    assert "mpirun" not in argv


def test_draft_and_target_run_in_orchestrator_mode():
    engines = ["llama-8b-engine", "llama-3.2-1b-draft-engine"]
    assert launch_mode(1, 2) == "orchestrator"
    argv = triton_launch_argv("/models", 1, Ports(), engine_models=engines, gpu_count=2)
    assert argv == [TS, "--model-repository=/models", "--grpc-port=8001", "--http-port=8000", "--metrics-port=8002",
                    "--pinned-memory-pool-byte-size=0", "--enable-peer-access=false",
                    "--cuda-memory-pool-byte-size=0:0", "--cuda-memory-pool-byte-size=1:0",
                    "--disable-auto-complete-config", "--backend-config=python,shm-region-prefix-name=prefix0_"]
    assert triton_launch_env(1, 2) == {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
    assert device_ids(4) == [0, 1, 2, 3] and device_ids(1, first=2) == [2]


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


def test_launch_plan_reads_a_target_and_its_draft_from_the_repository_and_picks_orchestrator_mode(published,
                                                                                                  tmp_path):
    from trtpipe.serve.process.trt_launch import engine_models_in_repo, launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-3.2-1b-draft", "kd", tmp_path / "d")
    publish_fake_build(published, "llama-8b", "kt", tmp_path / "t")
    assert engine_models_in_repo(published) == {"llama-3.2-1b-draft-engine": 1, "llama-8b-engine": 1}
    plan = launch_plan(published, Ports())
    assert (plan.mode, plan.world_size) == ("orchestrator", 1)
    assert plan.env == {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
    assert plan.argv[0] == TS and "--cuda-memory-pool-byte-size=0:0" in plan.argv


def test_launch_plan_for_a_tp4_engine_is_one_mpirun_in_leader_mode(published, tmp_path):
    from trtpipe.serve.process.trt_launch import launch_plan

    from .fakes import publish_fake_build

    publish_fake_build(published, "llama-70b", "k", tmp_path / "s", tp=4, build={"max_batch_size": 128})
    plan = launch_plan(published, Ports())
    assert (plan.mode, plan.world_size, plan.engine_models) == ("leader", 4, ["llama-70b-engine"])
    assert plan.argv[:2] == ["mpirun", "--allow-run-as-root"] and plan.argv.count(TS) == 4


def test_launch_plan_refuses_a_repository_without_engines(tmp_path):
    from trtpipe.serve.process.trt_launch import launch_plan

    with pytest.raises(ConfigError, match="no published tensorrtllm model"):
        launch_plan(tmp_path, Ports())
