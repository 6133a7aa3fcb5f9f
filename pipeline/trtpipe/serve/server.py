"""serve(): Triton on the model repository, then the OpenAI frontend in front of it, stopped together.

uvicorn handles Ctrl-C and SIGTERM (it stops accepting, lets in-flight responses finish); Triton is
stopped after it, so nothing is cut off mid-stream.
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import uvicorn

from trtpipe.errors import TritonStartError
from trtpipe.repo import layout
from trtpipe.serve.app import FrontendSettings, create_app
from trtpipe.serve.launcher import TritonPorts, TritonServer


@dataclass(frozen=True)
class ServeOptions:
    repo: Path
    host: str = "127.0.0.1"
    port: int = 9000
    triton_ports: TritonPorts = TritonPorts()
    chat_template: str | None = None
    api_keys: tuple[str, ...] = ()
    max_running: int = 256
    max_waiting: int = 512
    triton_log: Path | None = None


def serve(opts: ServeOptions, on_ready: Callable[[str], None] = lambda url: None) -> None:
    models = layout.published_models(opts.repo)
    if not models:
        raise TritonStartError(f"no published model in {opts.repo}",
                               fix="build one first: trtpipe build tiny-llama (or pass --repo)")
    triton = TritonServer(opts.repo, opts.triton_ports, log_path=opts.triton_log)
    with triton:
        settings = FrontendSettings(repo=opts.repo, triton_grpc_url=triton.grpc_url, chat_template=opts.chat_template,
                                    max_running=opts.max_running, max_waiting=opts.max_waiting,
                                    api_keys=opts.api_keys)
        config = uvicorn.Config(create_app(settings), host=opts.host, port=opts.port, log_level="warning",
                                timeout_graceful_shutdown=30)
        server = uvicorn.Server(config)
        on_ready(f"http://{opts.host}:{opts.port}/v1")
        with _signals_end_uvicorn_only():
            server.run()


@contextmanager
def _signals_end_uvicorn_only():
    """uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown; with the default handlers that would
    kill this process before Triton is stopped. No-op handlers let serve() return and stop Triton cleanly."""
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
