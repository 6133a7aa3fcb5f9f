"""serve(): Triton on the model repository (or external replicas), then the OpenAI frontend, stopped together.

The frontend is one API-server process (this one), or with `api_servers` > 1 that many worker processes on
the same port under a supervisor (serve.process.workers). Drain on SIGTERM (or Ctrl-C): readiness turns false and
admission stops at once (new requests get 503); requests in flight get `drain_timeout_s` to finish; the rest
end with an SSE error event and `[DONE]` (or a 503); then uvicorn stops (every worker), then the Triton this
command started, and the process exits 0. A second signal forces the exit.
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

import uvicorn

from trtpipe.errors import TritonStartError
from trtpipe.repo import layout
from trtpipe.serve.api.app import FrontendSettings, create_app
from trtpipe.serve.process.draining import DrainingServer
from trtpipe.serve.process.launcher import TritonPorts, TritonServer, usable_cpus

log = logging.getLogger("trtpipe.serve")


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
    triton_log: Path | None = None
    triton_args: tuple[str, ...] = ()
    engine_threads: int | None = None  # reference engine BLAS threads; None: all cores but one
    api_servers: int = 1  # frontend processes on the port (default_api_servers() is the CLI's default)


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
                            max_body_bytes=opts.max_body_bytes)


def serve(opts: ServeOptions, on_ready: Callable[[str], None] = lambda url: None) -> None:
    if not layout.published_models(opts.repo):
        raise TritonStartError(f"no published model in {opts.repo}",
                               fix="build one first: trtpipe build tiny-llama (or pass --repo)")
    with ExitStack() as stack:
        if opts.triton_urls:
            urls = tuple(opts.triton_urls)
        else:
            triton = stack.enter_context(TritonServer(opts.repo, opts.triton_ports, log_path=opts.triton_log,
                                                      extra_args=list(opts.triton_args),
                                                      launch=_trt_launch(opts), engine_threads=opts.engine_threads))
            stack.enter_context(_recorded(opts.repo, triton))
            urls = (triton.grpc_url,)
            # Its metrics port is loopback-only: the frontend's /metrics mirrors it (serve/api/triton_metrics.py).
            os.environ.setdefault("TRTPIPE_TRITON_METRICS_URL", f"http://127.0.0.1:{opts.triton_ports.metrics}/metrics")
        if opts.api_servers > 1:
            from trtpipe.serve.process.workers import Supervisor

            Supervisor(frontend_settings(opts, urls), opts.api_servers, opts.host, opts.port,
                       opts.drain_timeout_s).run(on_ready)
            return
        app = create_app(frontend_settings(opts, urls))
        config = uvicorn.Config(app, host=opts.host, port=opts.port, log_level="warning",
                                timeout_graceful_shutdown=10)
        server = DrainingServer(config, app.state.frontend.drain, opts.drain_timeout_s)
        on_ready(f"http://{opts.host}:{opts.port}/v1")
        with _signals_end_uvicorn_only():
            server.run()


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
    """Record our Triton for publish/rollback reloads, unless another live server already holds the record."""
    from trtpipe.repo.triton_control import clear_server_record, record_server, running_server

    mine = running_server(repo) is None
    if mine:
        record_server(repo, triton.http_url, triton.process.pid)
    try:
        yield
    finally:
        if mine:
            clear_server_record(repo, triton.process.pid)


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
