"""Shared fixtures: one built tiny-llama repository and one real Triton (and frontend) per test session."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest


def extra_model(name: str, repo: Path, triton, config_dir: Path, monkeypatch):
    """A tiny-llama variant named `name` that a test may publish into the session's repository (a generator for
    a fixture): its config is found through TRTPIPE_CONFIG_PATH, and afterwards the model is unloaded from the
    session's Triton and removed from the repository."""
    import shutil

    import tritonclient.http as httpclient

    (config_dir / f"{name}.yaml").write_text(f"extends: tiny-llama\nname: {name}\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(config_dir))
    yield name
    client = httpclient.InferenceServerClient(triton.http_url.removeprefix("http://"))
    client.unload_model(f"{name}-engine")
    client.close()
    shutil.rmtree(repo / f"{name}-engine", ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def trtpipe_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("trtpipe-home")
    os.environ["TRTPIPE_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def built_repo(trtpipe_home) -> Path:
    """tiny-llama built and published once for the whole session."""
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = trtpipe_home / "model_repository"
    build(load_config("tiny-llama"), repo)
    return repo


@pytest.fixture(scope="session")
def triton(built_repo, trtpipe_home):
    from trtpipe.repo.triton_control import clear_server_record, record_server
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    server = TritonServer(built_repo, TritonPorts(free_port(), free_port(), free_port()),
                          log_path=trtpipe_home / "tritonserver.log", exit_timeout_s=2)
    server.start()
    # As `trtpipe serve` does: publish and rollback then reload models on this server.
    record_server(built_repo, server.http_url, server.process.pid)
    yield server
    clear_server_record(built_repo, server.process.pid)
    server.stop()


@pytest.fixture(scope="session")
def frontend(triton, built_repo) -> str:
    """The OpenAI frontend on a free port in a background thread; yields its base URL (…/v1)."""
    import uvicorn

    from trtpipe.serve.api.app import FrontendSettings, create_app
    from trtpipe.serve.api.transport import uvicorn_config
    from trtpipe.serve.process.launcher import wait_http_ok

    port = free_port()
    app = create_app(FrontendSettings(repo=built_repo, triton_grpc_url=triton.grpc_url, max_running=64,
                                      max_waiting=64))
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    if wait_http_ok(f"http://127.0.0.1:{port}/health/ready", 30, interval_s=0.1) != "ready":
        raise RuntimeError("the frontend did not become ready")
    yield f"http://127.0.0.1:{port}/v1"
    server.should_exit = True
    thread.join(10)
