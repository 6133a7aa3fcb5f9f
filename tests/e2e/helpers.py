"""Helpers for e2e tests: frontends on free ports in a background thread, engine idleness, raw SSE reads."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

import httpx

from tests.conftest import free_port


@contextmanager
def running_frontend(settings, wait_ready: bool = True) -> Iterator[str]:
    """create_app(settings) under uvicorn in a thread; yields the base URL (…/v1)."""
    import uvicorn

    from trtpipe.serve.api.app import create_app
    from trtpipe.serve.api.transport import uvicorn_config

    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn_config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    path = "/health/ready" if wait_ready else "/health/live"
    deadline = time.monotonic() + 30
    headers = {"Authorization": f"Bearer {settings.api_keys[0]}"} if settings.api_keys else {}
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1, headers=headers).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        server.should_exit = True
        raise RuntimeError(f"the frontend did not answer 200 on {path}")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(15)


def settings_for(triton, built_repo, **overrides):
    from trtpipe.serve.api.app import FrontendSettings

    base = FrontendSettings(repo=built_repo, triton_grpc_url=triton.grpc_url, health_interval_s=0.2,
                            canary_interval_s=1.0)
    return replace(base, **overrides)


def engine_state(metrics_port: int, model: str = "tiny-llama-engine") -> dict[str, float]:
    """The reference engine's gauges for one model, from Triton's own /metrics endpoint."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    state = {}
    for line in text.splitlines():
        if line.startswith("trtpipe_engine_state{") and f'model="{model}"' in line:
            labels, value = line.rsplit(" ", 1)
            state[labels.split('state="')[1].split('"')[0]] = float(value)
    return state


def wait_engine_idle(metrics_port: int, model: str = "tiny-llama-engine", timeout_s: float = 15.0) -> dict:
    """Poll Triton's engine gauges until no request is active and no KV block is held; returns the last state."""
    deadline = time.monotonic() + timeout_s
    state = {}
    while time.monotonic() < deadline:
        state = engine_state(metrics_port, model)
        if state.get("num_active_requests") == 0 and state.get("kv_blocks_used") == 0:
            return state
        time.sleep(0.05)
    return state


def wait_engine_busy(metrics_port: int, model: str = "tiny-llama-engine", timeout_s: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout_s
    state = {}
    while time.monotonic() < deadline:
        state = engine_state(metrics_port, model)
        if state.get("num_active_requests", 0) >= 1 or state.get("kv_blocks_used", 0) >= 1:
            return state
        time.sleep(0.05)
    return state


def kill_streaming_client(script: str, url: str, metrics_port: int) -> tuple[dict, float]:
    """Run `script` (a Python client that prints STREAMING once its streams are open) against `url`, SIGKILL it
    once the engine is busy with them, and wait for the engine to go idle: -> (idle state, seconds it took)."""
    import os
    import signal
    import subprocess
    import sys

    client = subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert client.stdout.readline().strip() == "STREAMING"
        tb = time.monotonic()
        busy = wait_engine_busy(metrics_port)
        assert busy.get("num_active_requests", 0) >= 1, (busy, time.monotonic() - tb, client.poll(),
                                                          client.stdout.read() if client.poll() is not None else "")
        client.send_signal(signal.SIGKILL)
        client.wait(10)
        t0 = time.monotonic()
        idle = wait_engine_idle(metrics_port)
        return idle, time.monotonic() - t0
    finally:
        client.kill()


def metric_lines(base_url: str, prefix: str, headers: dict | None = None) -> dict[str, float]:
    """Samples of /metrics whose name starts with `prefix`: {'name{labels}': value}."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", headers=headers or {}, timeout=5).text
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out
