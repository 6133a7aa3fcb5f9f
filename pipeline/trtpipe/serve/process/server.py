"""serve(): Triton on the model repository (or external replicas), then the OpenAI frontend, stopped together.

The frontend is one API-server process (this one), or with `api_servers` > 1 that many worker processes on
the same port under a supervisor (serve.process.workers). Drain on SIGTERM (or Ctrl-C): readiness turns false and
admission stops at once (new requests get 503); requests in flight get `drain_timeout_s` to finish; the rest
end with an SSE error event and `[DONE]` (or a 503); then uvicorn stops (every worker), then the Triton this
command started, and the process exits 0. A second signal forces the exit.

Before anything starts, every port is checked (ports.py: one line naming the port, its holder and the flag).
The Triton this command starts runs under a TritonSupervisor (triton_supervisor.py): restarted when it dies or
hangs, and when it keeps failing, the frontend stops and serve exits 5 (a machine error) saying why. Its environment is an
allowlist (triton_env.py); its log is appended to, one file per run (launcher.run_log_path).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


from trtpipe.errors import TritonStartError
from trtpipe.repo import layout
from trtpipe.serve.api.app import FrontendSettings, create_app
from trtpipe.serve.api.transport import uvicorn_config
from trtpipe.serve.process.draining import DrainingServer
from trtpipe.serve.process.launcher import TritonPorts, TritonServer, usable_cpus
from trtpipe.serve.process.ports import PortUse, bind_port, check_ports
from trtpipe.serve.process.triton_supervisor import (DEFAULT_HANG_TIMEOUT_S, DEFAULT_MAX_FAILURES, RestartPolicy,
                                                     TritonSupervisor, replica_verdict)

log = logging.getLogger("trtpipe.serve")
TRITON_ADDRESS = "127.0.0.1"  # loopback: the frontend is Triton's only client


@dataclass(frozen=True)
class ServeOptions:
    repo: Path
    host: str = "127.0.0.1"
    port: int = 9000
    triton_ports: TritonPorts = TritonPorts()
    triton_urls: tuple[str, ...] = ()  # external Triton replicas (gRPC host:port); empty: start our own
    chat_template: str | None = None
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    protect_metrics: bool = False
    max_running: int = 256
    max_waiting: int = 512
    request_timeout_s: float | None = 600.0
    keepalive_s: float | None = 15.0
    drain_timeout_s: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024
    allowed_origins: tuple[str, ...] = ()  # CORS; empty: off
    triton_log: Path | None = None
    triton_args: tuple[str, ...] = ()
    engine_threads: int | None = None  # reference engine BLAS threads; None: all cores but one
    api_servers: int = 1  # frontend processes on the port (default_api_servers() is the CLI's default)
    health_timeout_s: float = 10.0  # the frontend's ServerLive and canary deadline
    hang_timeout_s: float = DEFAULT_HANG_TIMEOUT_S  # unhealthy this long on end: our Triton is restarted
    triton_max_failures: int = DEFAULT_MAX_FAILURES  # failures of our Triton within 5 min before serve gives up


CORES_PER_API_SERVER = 4
MAX_DEFAULT_API_SERVERS = 4


def default_api_servers(cpus: int | None = None) -> int:
    """One API server per 4 usable cores, at least 1, at most 4.

    A saturated frontend process uses one core; the other three of its four are left to Triton (the engine's
    host threads, gRPC), tokenization and the OS, so a small machine (this project's 2-core CI box, a laptop)
    runs one process, as before. Four carry 31-41k streamed tokens/s at stream_interval 1 by the measured
    98-128 us of CPU per token (bench/results/frontend-scaling.md), above TensorRT-LLM's published 27.6k tok/s
    for Llama-3.1-8B FP8 on one H100; more is an explicit --api-servers, since every process adds its own health
    checks, canaries, gRPC connections and tokenizers in memory. (vLLM's --api-server-count defaults to its
    data-parallel size, one API server per engine: a rule about engines, not cores; with one Triton it would
    be 1 everywhere.)"""
    cpus = cpus or usable_cpus()
    return max(1, min(MAX_DEFAULT_API_SERVERS, cpus // CORES_PER_API_SERVER))


def frontend_settings(opts: ServeOptions, triton_urls: tuple[str, ...]) -> FrontendSettings:
    return FrontendSettings(repo=opts.repo, triton_grpc_url=triton_urls[0], triton_urls=triton_urls,
                            chat_template=opts.chat_template, max_running=opts.max_running,
                            max_waiting=opts.max_waiting, api_keys=opts.api_keys, protect_metrics=opts.protect_metrics,
                            request_timeout_s=opts.request_timeout_s, keepalive_s=opts.keepalive_s,
                            max_body_bytes=opts.max_body_bytes, health_timeout_s=opts.health_timeout_s,
                            allowed_origins=opts.allowed_origins)


def port_uses(opts: ServeOptions) -> tuple[PortUse, list[PortUse]]:
    """The frontend's port, and Triton's three when serve starts its own."""
    frontend = PortUse("the frontend", opts.host, opts.port, "--port")
    p = opts.triton_ports
    triton = [] if opts.triton_urls else [PortUse("Triton's HTTP port", TRITON_ADDRESS, p.http, "--http-port"),
                                          PortUse("Triton's gRPC port", TRITON_ADDRESS, p.grpc, "--grpc-port"),
                                          PortUse("Triton's metrics port", TRITON_ADDRESS, p.metrics, "--metrics-port")]
    return frontend, triton


def serve(opts: ServeOptions, on_ready: Callable[[str], None] = lambda url: None,
          on_starting: Callable[[], None] = lambda: None) -> None:
    """Check the ports, then (`on_starting()`) start Triton, supervised, unless replicas are given, and run the
    frontend until a signal; raises the supervisor's TritonStartError when Triton kept failing."""
    if not layout.published_models(opts.repo):
        raise TritonStartError(f"no published model in {opts.repo}",
                               fix="build one first: trtpipe build tiny-llama (or pass --repo)")
    frontend_port, triton_ports = port_uses(opts)
    check_ports([frontend_port, *triton_ports])
    on_starting()
    with ExitStack() as stack:
        # Held from now on (uvicorn listens on it) so nothing takes it while Triton starts; API servers bind
        # their own (SO_REUSEPORT).
        sock = stack.enter_context(bind_port(frontend_port)) if opts.api_servers == 1 else None
        triton = None
        if opts.triton_urls:
            urls = tuple(opts.triton_urls)
        else:
            triton = stack.enter_context(TritonServer(opts.repo, opts.triton_ports, log_path=opts.triton_log,
                                                      extra_args=list(opts.triton_args), address=TRITON_ADDRESS,
                                                      launch=_trt_launch(opts), engine_threads=opts.engine_threads))
            log.info("Triton's log: %s", triton.log_path)
            urls = (triton.grpc_url,)
            # Its metrics port is loopback-only: the frontend's /metrics mirrors it (serve/api/triton_metrics.py).
            os.environ.setdefault("TRTPIPE_TRITON_METRICS_URL", f"http://127.0.0.1:{opts.triton_ports.metrics}/metrics")
        settings = frontend_settings(opts, urls)
        if opts.api_servers > 1:
            from trtpipe.serve.process.workers import Supervisor

            workers = Supervisor(settings, opts.api_servers, opts.host, opts.port, opts.drain_timeout_s)
            supervisor = _supervise(stack, opts, triton, triton_ports, workers.triton_verdict, workers.stop)
            workers.run(on_ready)
        else:
            app = create_app(settings)
            config = uvicorn_config(app, host=opts.host, port=opts.port, log_level="warning",
                                    timeout_graceful_shutdown=10)
            server = DrainingServer(config, app.state.frontend.drain, opts.drain_timeout_s)
            supervisor = _supervise(stack, opts, triton, triton_ports, lambda: replica_verdict(app.state.frontend),
                                    lambda: setattr(server, "should_exit", True))
            on_ready(f"http://{opts.host}:{opts.port}/v1")
            with _signals_end_uvicorn_only():
                server.run(sockets=[sock])
        if supervisor is not None and supervisor.failure is not None:
            raise supervisor.failure


def _supervise(stack: ExitStack, opts: ServeOptions, triton: TritonServer | None, ports: list[PortUse],
               health: Callable[[], bool | None], stop_frontend: Callable[[], None]) -> TritonSupervisor | None:
    """Our Triton, recorded for publish/rollback and watched (restarted when it dies or hangs); None when the
    replicas are external (not ours to restart)."""
    if triton is None:
        return None
    record = stack.enter_context(_recorded(opts.repo, triton))
    return stack.enter_context(TritonSupervisor(
        triton, RestartPolicy(opts.triton_max_failures), health, opts.hang_timeout_s, on_restarted=record,
        on_give_up=stop_frontend, ports_free=lambda: check_ports(ports)))


def _trt_launch(opts: ServeOptions):
    """Check this machine against every live model's build first (each backend refuses with what to do),
    then, for TensorRT-LLM engines, launch as TensorRT-LLM's own script does (mpirun leader mode for tp*pp > 1)."""
    from trtpipe.serve.process.launcher import preflight_repository
    from trtpipe.serve.process.trt_launch import engine_models_in_repo, launch_plan

    preflight_repository(opts.repo)
    if not engine_models_in_repo(opts.repo):
        return None
    tritonserver = shutil.which("tritonserver") or "/opt/tritonserver/bin/tritonserver"
    return launch_plan(opts.repo, opts.triton_ports, tritonserver=tritonserver, exit_timeout_secs=5)


@contextmanager
def _recorded(repo: Path, triton: TritonServer):
    """Record our Triton for publish/rollback reloads, unless another live server already holds the record.
    Yields the function that re-records it after a restart (a new pid)."""
    from trtpipe.repo.triton_control import clear_server_record, record_server, running_server

    mine = running_server(repo) is None
    recorded = [triton.process.pid]

    def update(server: TritonServer) -> None:
        if mine:
            clear_server_record(repo, recorded[0])
            recorded[0] = server.process.pid
            record_server(repo, server.http_url, server.process.pid)

    if mine:
        record_server(repo, triton.http_url, triton.process.pid)
    try:
        yield update
    finally:
        if mine:
            clear_server_record(repo, recorded[0])


@contextmanager
def _signals_end_uvicorn_only():
    """Between uvicorn's exit and Triton's stop, a further SIGINT/SIGTERM must not kill this process before
    Triton is stopped: no-op handlers outside uvicorn's own (which it installs and restores itself)."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
