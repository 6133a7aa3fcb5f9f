"""Start a real tritonserver on a model repository, wait until it is ready, stop it cleanly.

Where tritonserver comes from: PATH first (the NGC image), else the binary inside the nvidia-pytriton
wheel, prepared as pytriton itself does it: a copy of its tritonserver/ tree with the Python-backend stub
for the running Python placed in backends/python/.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from trtpipe.cache import trtpipe_home
from trtpipe.errors import TritonStartError, tail
from trtpipe.serve.process import process_group
from trtpipe.serve.process.triton_env import triton_environment


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backend_dir: Path | None
    env: dict[str, str] = field(default_factory=dict)


def _pytriton_root() -> Path | None:
    try:
        import pytriton
    except ImportError:
        return None
    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    return root if (root / "bin" / "tritonserver").is_file() else None


def find_tritonserver() -> TritonInstall:
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(Path(on_path), None)
    root = _pytriton_root()
    if root is None:
        raise TritonStartError("no tritonserver found: not on PATH and nvidia-pytriton is not installed",
                               fix="pip install nvidia-pytriton (Linux x86-64, glibc >= 2.35) or run in the NGC "
                                   "tritonserver image")
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / py / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"nvidia-pytriton has no Python-backend stub for Python {py}",
                               fix="use Python 3.10-3.12")
    version = _package_version("nvidia-pytriton")
    prepared = trtpipe_home() / "tritonserver" / f"pytriton-{version}-py{py}"
    if not (prepared / "backends" / "python" / "triton_python_backend_stub").is_file():
        tmp = prepared.with_name(prepared.name + f".tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(root, tmp, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
        shutil.copy2(stub, tmp / "backends" / "python" / "triton_python_backend_stub")
        shutil.rmtree(prepared, ignore_errors=True)
        os.replace(tmp, prepared)
    libs = root.parent.parent / "nvidia_pytriton.libs"
    venv_bin = str(Path(sys.executable).parent)
    env = {
        # The stub links libpython3.X.so: this interpreter's own (pyenv, a venv's base) before the system's.
        "LD_LIBRARY_PATH": os.pathsep.join(p for p in (str(libs), sysconfig.get_config_var("LIBDIR") or "",
                                                       os.environ.get("LD_LIBRARY_PATH", "")) if p),
        # The Python-backend stub embeds libpython: it must see the same packages as this process.
        "PATH": os.pathsep.join((venv_bin, os.environ.get("PATH", ""))),
        "PYTHONPATH": os.pathsep.join(p for p in (sysconfig.get_paths()["purelib"], *_editable_roots(),
                                                   os.environ.get("PYTHONPATH", "")) if p),
    }
    return TritonInstall(prepared / "bin" / "tritonserver", prepared / "backends", env)


def _editable_roots() -> list[str]:
    import trtpipe

    return [str(Path(trtpipe.__file__).resolve().parents[1])]


def _package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def preflight_repository(repo_dir: Path, machine=None) -> list[str]:
    """Before Triton starts on a repository: each live model's backend checks this machine against what the
    model needs (GPUs, architecture, memory, the TensorRT-LLM it was built for or needs; nothing for the
    reference engine). Raises the backend's PreflightError on the first refusal; returns the passed checks,
    prefixed by model, for the log."""
    from trtpipe.backend_registry import get_backend
    from trtpipe.manifest import Manifest
    from trtpipe.repo import layout

    passed = []
    for model in layout.published_models(Path(repo_dir)):
        model_dir = Path(repo_dir) / layout.engine_model_name(model)
        manifest = Manifest.read(model_dir / str(layout.live_version(model_dir)) / "manifest.json")
        checks = get_backend(manifest.backend).check_serving_machine(manifest, machine)
        passed += [f"{model_dir.name}: {check}" for check in checks]
    return passed


def wait_http_ok(url: str, timeout_s: float, process: subprocess.Popen | None = None,
                 interval_s: float = 0.2, cancelled: Callable[[], bool] = lambda: False) -> str:
    """Poll GET `url` until it answers 200: "ready", or "exited" if `process` ended first, "cancelled" once
    `cancelled()` is true, or "timeout"."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return "exited"
        if cancelled():
            return "cancelled"
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return "ready"
        except httpx.HTTPError:
            pass
        time.sleep(interval_s)
    return "timeout"


def run_log_path(home: Path | None = None, now: float | None = None, pid: int | None = None) -> Path:
    """The default Triton log of one `serve` run: logs/tritonserver-<start time>-<serve pid>.log.

    NOTE: one file per run, not one shared file: a second `serve` (on other ports, or one refused at its port
    check) never touches the log of the one running, and restarts of a run's Triton append to its file."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    return (home or trtpipe_home()) / "logs" / f"tritonserver-{stamp}-{pid or os.getpid()}.log"


def open_log(path: Path, header: str):
    """`path` opened for appending (never truncated), after a header line that marks this start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a")
    log.write(f"=== trtpipe {time.strftime('%Y-%m-%d %H:%M:%S')}: {header} ===\n")
    log.flush()
    return log


THREAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")


def usable_cpus() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def engine_thread_env(threads: int | None, environ=os.environ, cpus: int | None = None) -> dict[str, str]:
    """BLAS threads for the reference engine inside Triton. `threads` (--engine-threads) when given; else
    whatever the environment already sets; else every usable core but one.

    NOTE: on a small machine numpy's OpenBLAS otherwise takes every core (its workers spin between calls),
    and everything else on the box waits for a core: on 2 cores, scrapes of Triton's /metrics stalled for up
    to 2.7 s under load (bench/triton_metrics_latency.py) and the frontend's TTFT at concurrency 4-64 rose by
    tens to hundreds of ms. Like vLLM's CPU backend (VLLM_CPU_NUM_OF_RESERVED_CPU), one core is left to the
    frontend, Triton's own threads and the OS, at some of the engine's throughput
    (bench/results/tiny-llama-frontend-vs-grpc.md)."""
    if threads is None:
        if any(name in environ for name in THREAD_ENV):
            return {}
        cpus = cpus or usable_cpus()
        threads = max(1, cpus - 1)
    return {name: str(threads) for name in THREAD_ENV}


_prctl = None


def _resolve_prctl():
    """libc's prctl, looked up once (in the parent, before any fork), or None off glibc Linux."""
    global _prctl
    if _prctl is None:
        try:
            import ctypes

            _prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
        except OSError:
            _prctl = False
    return _prctl or None


def _die_with_parent() -> None:
    """Linux: SIGTERM tritonserver if trtpipe itself dies, so no orphan keeps the ports and the memory.

    NOTE: this runs between fork and exec (preexec_fn), and a restart forks while other threads of serve run
    (gRPC, the event loop's executor): the child must not take a lock another thread may have held at the fork,
    as dlopen does. So libc is resolved in the parent (_resolve_prctl() before Popen) and the child only calls."""
    prctl = _resolve_prctl()
    if prctl is not None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """One tritonserver process (with its process group: Python-backend stubs, mpirun ranks). Use as a context
    manager, or start()/stop(); kill() ends a dead or hung one, and start() again restarts it on the same ports
    and log."""

    def __init__(self, repo: Path, ports: TritonPorts = TritonPorts(), log_path: Path | None = None,
                 extra_args: list[str] = (), exit_timeout_s: int = 5, address: str = "127.0.0.1",
                 launch=None, engine_threads: int | None = None, extra_env: dict[str, str] | None = None):
        """`launch`: a serve.process.trt_launch.LaunchPlan for repositories with TensorRT-LLM engines (its argv and env
        replace ours: one tritonserver, or mpirun with one per rank). `engine_threads`: see engine_thread_env
        (the reference engine only; a launch plan's engines run on the GPU). `log_path`: appended to, never
        truncated (default: run_log_path(), one file per run). `extra_env`: variables passed to Triton on top
        of the allowlisted environment (triton_env.py), for a model that needs one the allowlist leaves out."""
        self.repo, self.ports, self.address, self.launch = Path(repo), ports, address, launch
        self.engine_threads, self.extra_env = engine_threads, dict(extra_env or {})
        self.log_path = log_path or run_log_path()
        self.extra_args, self.exit_timeout_s = list(extra_args), exit_timeout_s
        self.process: subprocess.Popen | None = None
        self.num_starts = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def argv(self, install: TritonInstall) -> list[str]:
        if self.launch is not None:
            return list(self.launch.argv) + self.extra_args
        argv = [str(install.binary), f"--model-repository={self.repo}",
                f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
                f"--metrics-port={self.ports.metrics}",
                # Loopback only: the frontend is Triton's client. Expose Triton itself with extra_args.
                f"--http-address={self.address}", f"--grpc-address={self.address}",
                f"--metrics-address={self.address}",
                # explicit control: trtpipe loads new versions and rollbacks through the repository API.
                "--model-control-mode=explicit", "--load-model=*",
                f"--exit-timeout-secs={self.exit_timeout_s}", "--log-verbose=0"]
        if install.backend_dir:
            argv.append(f"--backend-directory={install.backend_dir}")
        return argv + self.extra_args

    def environment(self, install: TritonInstall, environ=os.environ) -> dict[str, str]:
        """The allowlisted environment (triton_env.py: no HF_TOKEN, no API keys), then what the launch needs,
        then `extra_env`."""
        launch_env = self.launch.env if self.launch is not None else engine_thread_env(self.engine_threads)
        return triton_environment(environ, install.env, launch_env, self.extra_env)

    def start(self, timeout_s: float = 120.0, cancelled: Callable[[], bool] = lambda: False,
              why: str = "") -> "TritonServer":
        """Start and wait until ready; TritonStartError (with the log's tail) if it exits or is not ready in
        time. `cancelled`: stop waiting (and stop the server) once it returns true; `why`: for the log's header."""
        if not self.repo.is_dir():
            raise TritonStartError(f"model repository {self.repo} does not exist",
                                   fix="build a model first: trtpipe build tiny-llama (or pass --repo)")
        install = find_tritonserver()
        self.num_starts += 1
        _resolve_prctl()
        log = open_log(self.log_path, f"tritonserver start {self.num_starts} by pid {os.getpid()}"
                                      + (f" ({why})" if why else ""))
        self.process = subprocess.Popen(self.argv(install), stdout=log, stderr=subprocess.STDOUT,
                                        env=self.environment(install), start_new_session=True,
                                        preexec_fn=_die_with_parent)
        log.close()
        outcome = wait_http_ok(f"{self.http_url}/v2/health/ready", timeout_s, self.process, cancelled=cancelled)
        if outcome == "ready":
            return self
        if outcome == "exited":
            self.kill()  # the stubs it may have started
            raise TritonStartError(f"tritonserver exited with code {self.process.returncode} during start-up\n"
                                   f"--- last lines of {self.log_path} ---\n{self._log_tail()}",
                                   fix="read the log above (a model that failed to load is named there)")
        self.kill()
        if outcome == "cancelled":
            raise TritonStartError("tritonserver start-up was cancelled (serve is stopping)")
        raise TritonStartError(f"tritonserver was not ready after {timeout_s:.0f} s\n--- last lines of "
                               f"{self.log_path} ---\n{self._log_tail()}",
                               fix="check the ports are free and the log above")

    def exit_code(self) -> int | None:
        """The server's exit (a Popen returncode) once it has ended, else None; it stays unreaped until kill()
        or stop(), so its process group cannot be mistaken for another."""
        if self.process is None:
            return None
        if self.process.returncode is not None:
            return self.process.returncode
        return process_group.peek_exit(self.process.pid)

    def kill(self) -> None:
        """SIGKILL the whole process group (a dead server's orphaned stubs, a hung server), reap the server and
        wait for every other member to be gone."""
        if self.process is None:
            return
        pgid = self.process.pid
        members = process_group.group_members(pgid)
        process_group.kill_group(pgid)
        self.process.wait()
        process_group.wait_gone([pid for pid in members if pid != pgid])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # The whole process group: with mpirun, every rank's tritonserver. SIGCONT: a stopped (hung) server
        # would otherwise never see the SIGTERM.
        os.killpg(self.process.pid, signal.SIGTERM)
        process_group.kill_group(self.process.pid, signal.SIGCONT)
        try:
            self.process.wait(timeout=self.exit_timeout_s + 10)
        except subprocess.TimeoutExpired:
            self.kill()

    def _log_tail(self) -> str:
        try:
            return tail(self.log_path.read_text(errors="replace"))
        except OSError:
            return "(no log)"

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
