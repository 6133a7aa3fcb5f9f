"""The tritonserver command line for a trt-engine model repository, in the three shapes TensorRT-LLM's
backend supports (reference/trtllm-facts.md §5; triton_backend/scripts/launch_triton_server.py):

- single:       one TRT-LLM engine on one GPU: tritonserver directly, no MPI.
- leader:       one engine on tp*pp GPUs: one `mpirun` with one tritonserver per rank. Rank 0 loads the
                whole repository and serves; ranks > 0 load only the engine model(s) and never return
                from model initialization, so only rank 0 answers HTTP/gRPC. world_size must equal the
                engine's tp*pp.
- orchestrator: several TRT-LLM engines (a draft and a target): one tritonserver with
                TRTLLM_ORCHESTRATOR=1, which spawns a worker process per engine on the GPUs named by
                each model's gpu_device_ids. This is the launch the upstream draft-target example uses.

Every mode runs Triton with `--model-control-mode=explicit` and loads the repository at start
(`--load-model=*`; ranks > 0 in leader mode load only the engine models, as launch_triton_server.py does), so
publish and rollback can reload models through the repository API as on the CPU path (repo/triton_control.py).
NOTE: in leader mode that API reaches rank 0 only: a new engine version reloads there but not in ranks > 0, so
LaunchPlan.reloads_engines is False and a new trt-engine version of a tp*pp > 1 model needs a restart.

Placement (engine_gpu_ids): rank r of an engine on GPU r; a draft engine (its own model set, world size 1)
shares GPU 0 with the target's rank 0, which is what the plan's memory check assumes (trt/preflight.py
_required_bytes). Publish writes it as each engine's gpu_device_ids (repo/tensorrtllm_configs.py);
orchestrator mode requires it of every engine and sizes the CUDA pools from it.

Each rank gets its own Python-backend shared-memory prefix so the ranks' stubs cannot collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Sequence

from trtpipe.errors import ConfigError


class Ports(Protocol):
    http: int
    grpc: int
    metrics: int


def launch_mode(world_size: int, num_engine_models: int) -> str:
    if num_engine_models > 1:
        return "orchestrator"
    return "single" if world_size == 1 else "leader"


def _server_args(tritonserver: str, repo_dir: Path, ports: Ports, rank: int, *,
                 exit_timeout_secs: int | None, log_file: str | None) -> list[str]:
    # Metrics on loopback, as on the CPU path: the frontend's /metrics mirrors them (serve/api/triton_metrics.py).
    args = [tritonserver, f"--model-repository={repo_dir}", f"--grpc-port={ports.grpc}",
            f"--http-port={ports.http}", f"--metrics-port={ports.metrics}", "--metrics-address=127.0.0.1"]
    if exit_timeout_secs is not None:
        args.append(f"--exit-timeout-secs={exit_timeout_secs}")
    if log_file and rank == 0:
        args += ["--log-verbose=3", f"--log-file={log_file}"]
    return args


def _tail_args(rank: int) -> list[str]:
    # Our configs are complete; auto-complete would only hide a mistake.
    return ["--disable-auto-complete-config", f"--backend-config=python,shm-region-prefix-name=prefix{rank}_"]


def _control_args(load: Sequence[str] = ("*",)) -> list[str]:
    """Explicit model control, loading `load` at start (every model of the repository by default)."""
    return ["--model-control-mode=explicit"] + [f"--load-model={name}" for name in load]


def engine_gpu_ids(world_size: int) -> list[int]:
    """gpu_device_ids of one engine: rank r on GPU r. A draft (world size 1) lands on GPU 0 beside the target's
    rank 0, as the plan's memory check assumes."""
    return device_ids(world_size)


def triton_launch_argv(repo_dir: str | Path, world_size: int, ports: Ports, *,
                       engine_models: Sequence[str] = (), tritonserver: str = "/opt/tritonserver/bin/tritonserver",
                       mpirun: str = "mpirun", gpu_count: int | None = None, exit_timeout_secs: int | None = None,
                       log_file: str | None = None, oversubscribe: bool = False) -> list[str]:
    """argv to start Triton on a trt-engine repository.

    engine_models: the repository's tensorrtllm models (ranks > 0 load only these). With more than one,
    the launch is orchestrator mode; pass gpu_count (GPUs visible to the container) then, and use
    triton_launch_env() for its environment."""
    repo_dir = Path(repo_dir)
    if world_size < 1:
        raise ConfigError(f"world_size {world_size} must be >= 1", where="launch", fix="use tp * pp of the engine")
    mode = launch_mode(world_size, len(engine_models))
    if mode == "single":
        return _server_args(tritonserver, repo_dir, ports, 0, exit_timeout_secs=exit_timeout_secs,
                            log_file=log_file) + _control_args() + _tail_args(0)
    if mode == "orchestrator":
        if not gpu_count:
            raise ConfigError("orchestrator mode needs the number of visible GPUs", where="launch",
                              fix="pass gpu_count (nvidia-smi --list-gpus | wc -l)")
        # The orchestrator process spawns one worker per engine itself: the server is a single process.
        # NOTE: spawned workers move tensors through host memory, so Triton's own CUDA and pinned pools
        # are turned off, as launch_triton_server.py does for Triton > 24.06 with spawning enabled.
        argv = _server_args(tritonserver, repo_dir, ports, 0, exit_timeout_secs=exit_timeout_secs,
                            log_file=log_file)
        argv += ["--pinned-memory-pool-byte-size=0", "--enable-peer-access=false"]
        argv += [f"--cuda-memory-pool-byte-size={gpu}:0" for gpu in range(gpu_count)]
        return argv + _control_args() + _tail_args(0)
    if not engine_models:
        raise ConfigError("leader mode needs the engine model names", where="launch",
                          fix="pass engine_models=[<model>-engine]; ranks > 0 load only those")
    argv = [mpirun, "--allow-run-as-root"] + (["--oversubscribe"] if oversubscribe else [])
    for rank in range(world_size):
        if rank:
            argv.append(":")  # MPMD: one app context per rank
        argv += ["-n", "1"] + _server_args(tritonserver, repo_dir, ports, rank, exit_timeout_secs=exit_timeout_secs,
                                           log_file=log_file)
        argv += _control_args(engine_models if rank else ("*",))
        argv += _tail_args(rank)
    return argv


def triton_launch_env(world_size: int, num_engine_models: int) -> dict[str, str]:
    """Environment additions for the launch (the caller's environment is inherited)."""
    if launch_mode(world_size, num_engine_models) == "orchestrator":
        return {"TRTLLM_ORCHESTRATOR": "1", "TRTLLM_ORCHESTRATOR_SPAWN_PROCESSES": "1"}
    return {}


def device_ids(world_size: int, first: int = 0) -> list[int]:
    """GPU ids for one engine in orchestrator mode: consecutive, starting at `first`."""
    return list(range(first, first + world_size))


@dataclass(frozen=True)
class LaunchPlan:
    """How to start Triton on a model repository that holds trt-engine models."""

    mode: str  # "single", "leader" or "orchestrator"
    argv: list[str]
    env: dict[str, str]  # added to the caller's environment
    engine_models: list[str]
    world_size: int
    placement: dict[str, list[int]] = field(default_factory=dict)  # engine model -> gpu_device_ids
    # Whether a publish/rollback reload through the repository API reaches every rank (not in leader mode).
    reloads_engines: bool = True


@dataclass(frozen=True)
class EngineModel:
    name: str
    world_size: int
    gpu_device_ids: list[int] | None  # from its config.pbtxt; None when the parameter is absent


def engine_models_in_repo(repo_dir: str | Path) -> dict[str, int]:
    """The repository's tensorrtllm models and the world size (tp*pp) of each one's live engine."""
    return {m.name: m.world_size for m in read_engine_models(repo_dir)}


def read_engine_models(repo_dir: str | Path) -> list[EngineModel]:
    """Each live tensorrtllm model: its engine's world size (config.json mapping) and its gpu_device_ids."""
    from trtpipe.repo import layout
    from trtpipe.repo.tensorrtllm_configs import parse_pbtxt
    from trtpipe.trt.engine_dir import read_engine_config

    found = []
    for cfg_path in sorted(Path(repo_dir).glob("*/config.pbtxt")):
        cfg = parse_pbtxt(cfg_path.read_text())
        live = layout.live_version(cfg_path.parent)
        if cfg.backend != "tensorrtllm" or live is None:
            continue
        mapping = read_engine_config(cfg_path.parent / str(live) / "engine")["pretrained_config"].get("mapping") or {}
        ids = cfg.parameters["gpu_device_ids"].string_value if "gpu_device_ids" in cfg.parameters else ""
        found.append(EngineModel(cfg_path.parent.name, int(mapping.get("tp_size", 1)) * int(mapping.get("pp_size", 1)),
                                 [int(i) for i in ids.split(",")] if ids.strip() else None))
    return found


def _orchestrator_gpus(engines: list[EngineModel]) -> int:
    """GPUs the orchestrated engines occupy; every engine must say where it runs."""
    unplaced = [e.name for e in engines if not e.gpu_device_ids]
    if unplaced:
        raise ConfigError(f"{', '.join(unplaced)} name(s) no gpu_device_ids: in orchestrator mode each engine's worker "
                          "would land on a GPU left to chance", where="launch",
                          fix="republish them with this trtpipe (trtpipe build NAME --force publish writes "
                              "gpu_device_ids)")
    wrong = [f"{e.name} ({len(e.gpu_device_ids)} ids for {e.world_size} ranks)" for e in engines
             if len(e.gpu_device_ids) != e.world_size]
    if wrong:
        raise ConfigError(f"gpu_device_ids do not match the engines' tp*pp: {', '.join(wrong)}", where="launch",
                          fix="republish the model so its config names one GPU per rank")
    return max(i for e in engines for i in e.gpu_device_ids) + 1


def launch_plan(repo_dir: str | Path, ports: Ports, *, tritonserver: str = "/opt/tritonserver/bin/tritonserver",
                mpirun: str = "mpirun", exit_timeout_secs: int | None = None,
                log_file: str | None = None) -> LaunchPlan:
    """The launch for a trt-engine repository, read from the repository itself (for `trtpipe serve`).

    One engine model on one GPU: a plain tritonserver. One engine on tp*pp GPUs: leader mode (mpirun).
    Several engines (a target and its draft): orchestrator mode, one tritonserver, the CUDA pools sized from
    the engines' gpu_device_ids."""
    engines = read_engine_models(repo_dir)
    if not engines:
        raise ConfigError(f"{repo_dir} has no published tensorrtllm model", where="launch",
                          fix="publish a trt-engine build first: trtpipe build llama-8b")
    world_size = max(e.world_size for e in engines)
    mode = launch_mode(world_size, len(engines))
    gpu_count = _orchestrator_gpus(engines) if mode == "orchestrator" else None
    names = [e.name for e in engines]
    argv = triton_launch_argv(repo_dir, world_size, ports, engine_models=names, tritonserver=tritonserver,
                              mpirun=mpirun, gpu_count=gpu_count, exit_timeout_secs=exit_timeout_secs,
                              log_file=log_file)
    return LaunchPlan(mode, argv, triton_launch_env(world_size, len(engines)), names, world_size,
                      {e.name: e.gpu_device_ids for e in engines if e.gpu_device_ids}, reloads_engines=mode != "leader")
