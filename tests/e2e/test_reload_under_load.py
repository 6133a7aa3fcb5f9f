"""Publish and roll back while streams run (issue 20, clean reloads): every stream that was not cut ends with all
its tokens, Triton survives, and afterwards it holds only the live version (none UNLOADING) with exactly one
Python backend stub process. Its own Triton and repository: the session's are shared with other tests. A Triton
that crashes under the reloads fails the test at once with its signal and the version change it interrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import pytest
from openai import OpenAI

from tests.conftest import free_port
from tests.e2e.helpers import running_frontend, settings_for

pytestmark = pytest.mark.e2e

CYCLES = 2  # each a publish and a rollback: four version changes
STREAMS = 6
MAX_TOKENS = 40


def _stub_processes(triton_pid: int) -> dict[int, str]:
    """pid -> version directory of each Python backend stub process the server runs."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(triton_pid)], capture_output=True,
                         text=True).stdout
    return {int(line.split()[0]): line.split()[2].split("/")[-2] for line in out.splitlines()
            if "triton_python_backend_stub" in line}


def _stubs(triton_pid: int) -> list[str]:
    return sorted(_stub_processes(triton_pid).values())


def _settled(client, live: int, pid: int, timeout_s: float) -> tuple[list, list]:
    """Poll until only `live` is READY, nothing else LOADING/UNLOADING and one stub runs; returns the last look."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = [(m.get("version"), m.get("state")) for m in client.get_model_repository_index()]
        stubs = _stubs(pid)
        settled = [v for v, s in states if s in ("READY", "LOADING", "UNLOADING")] == [str(live)]
        if (settled and stubs == [str(live)]) or time.monotonic() > deadline:
            return states, stubs
        time.sleep(0.2)


def _watch_for_a_crash(server, done: threading.Event, crash: list[str]) -> threading.Thread:
    """Triton 2.51 can die under these reloads (SIGSEGV) and then hang in its crash handler with connections
    open, so a publish's load waited for its timeout (a TimeoutError after 60 s, or ConnectionRefused once gone).
    On its "Signal (N) received." line: record that line and the version swap it interrupted, and kill the server,
    so the test fails at once saying so."""
    def watch() -> None:
        while not done.wait(0.2):
            try:
                lines = server.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            at = next((i for i, line in enumerate(lines) if line.startswith("Signal (")), None)
            if at is not None or server.exit_code() is not None:
                swaps = [line.split("] ", 1)[-1] for line in lines[:at] if "model_lifecycle.cc" in line]
                crash.append(f"{lines[at] if at is not None else f'exited with {server.exit_code()}'} "
                             f"(last version changes: {swaps[-3:]})")
                server.kill()
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _load(url: str, stop: threading.Event, results: list) -> list[threading.Thread]:
    """STREAMS clients streaming completions back to back; every other one closes its stream part-way (a client
    that goes away). Each finished stream records (finish_reason, chunks); a failed one, the exception."""
    client = OpenAI(base_url=url, api_key="unused", max_retries=0)

    def run(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                stream = client.completions.create(model="tiny-llama", prompt="Once upon", max_tokens=MAX_TOKENS,
                                                   temperature=0, stream=True, extra_body={"ignore_eos": True})
                reason, chunks = None, 0
                for chunks, chunk in enumerate(stream, 1):
                    reason = chunk.choices[0].finish_reason or reason
                    if i % 2 and chunks == 5 + n % 20:
                        stream.close()
                        reason = "closed"
                        break
                results.append((reason, chunks))
            except Exception as e:  # noqa: BLE001 - every failure is reported by the test
                results.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(STREAMS)]
    for t in threads:
        t.start()
    return threads


def test_publish_and_rollback_under_streaming_load_leave_only_the_live_version(trtpipe_home):
    import tritonclient.http as httpclient

    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo.triton_control import record_server
    from trtpipe.repo.versions import rollback
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer

    repo = trtpipe_home / "reload_repository"
    first = build(load_config("tiny-llama"), repo).published.version
    server = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()),
                          log_path=trtpipe_home / "tritonserver-reload.log", exit_timeout_s=2).start()
    stop, results, live, stub_pids = threading.Event(), [], first, {}
    done, crash = threading.Event(), []
    watchdog = _watch_for_a_crash(server, done, crash)
    try:
        record_server(repo, server.http_url, server.process.pid)  # publish and rollback reload this server
        with running_frontend(settings_for(server, repo)) as url:
            threads = _load(url, stop, results)
            time.sleep(1)
            for cycle in range(CYCLES):
                # A different serving spec: a new version over the cached engine.
                published = build(load_config("tiny-llama", [f"serving.stream_interval={cycle + 2}"]), repo,
                                  keep=CYCLES + 2).published
                assert not published.unchanged
                time.sleep(0.5)  # streams start on the new version before it is rolled back
                live = rollback(repo, "tiny-llama")
                assert live == first
            stop.set()
            for t in threads:
                t.join(120)
        client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
        states, stubs = _settled(client, live, server.process.pid, timeout_s=60)
        assert server.exit_code() is None, "Triton died under the reloads"
    except Exception:
        for _ in range(25):  # the crash's log line can come a moment after the failure it caused
            if crash:  # what failed (a reload, a stream) failed because Triton crashed: say that
                pytest.fail(f"tritonserver crashed under the reloads: {crash[0]}; log: {server.log_path}",
                            pytrace=False)
            time.sleep(0.2)
        raise
    finally:
        done.set()
        watchdog.join(5)  # before the server is stopped: its exit here is no crash
        stop.set()
        stub_pids = _stub_processes(server.process.pid)
        server.stop()
        for pid in stub_pids:  # a stub of a version that never unloaded can outlive tritonserver
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if crash:
        pytest.fail(f"tritonserver crashed under the reloads: {crash[0]}; log: {server.log_path}", pytrace=False)
    failed = [r for r in results if isinstance(r, Exception)]
    assert not failed, failed[:3]
    whole = [chunks for reason, chunks in results if reason != "closed"]
    assert whole and all(reason in ("length", "closed") for reason, _ in results), results
    assert len(whole) >= STREAMS, results  # streams kept running through the reloads
    assert (str(live), "READY") in states, states
    others = [(v, s) for v, s in states if v != str(live)]
    assert all(s in ("UNAVAILABLE", "UNLOADING") for _, s in others), states
    # Was an expected failure in about 1 run in 7 (issue 20): the API cancelled a disconnected client's gRPC call
    # (grpc.aio's read() on task cancel), which races Triton 2.51's stream handler; 32 of 32 runs clean since.
    assert not [v for v, s in others if s == "UNLOADING"], f"a version did not finish unloading: {states}"
    assert stubs == [str(live)], f"Python backend stubs of versions {stubs}, live {live}: one outlived its version"
