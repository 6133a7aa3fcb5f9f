"""`trtpipe serve` keeps its real tritonserver running: killed (SIGKILL) or hung (SIGSTOP), it is noticed, streams
in flight end with an SSE error event and [DONE], it is reaped with its Python-backend stubs, restarted, and
readiness returns; at --triton-max-failures serve exits 1 saying why. Also what the serve process guarantees
around it: a busy port refuses a second serve in one line without touching the first one's log, and no secret
of the caller's environment reaches Triton.

Only processes found from the serve process's own children are signalled (other Tritons run on this machine).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.conftest import free_port
from tests.e2e.api_servers import ServeProcess
from trtpipe.serve.process.process_group import group_members

pytestmark = pytest.mark.e2e
SECRET = "hf_e2e_never_in_triton"


def _start_serve(repo: Path, home: Path, log_name: str, *options: str) -> tuple[ServeProcess, list[str]]:
    port = free_port()
    argv = [sys.executable, "-m", "trtpipe", "serve", "--repo", str(repo), "--port", str(port),
            "--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", str(free_port()),
            "--health-timeout", "1", "--hang-timeout", "2", "--keepalive", "0.5", "--drain-timeout", "2", *options]
    log_path = home / log_name
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, env={**os.environ, "TRTPIPE_HOME": str(home), "HF_TOKEN": SECRET},
                                   stdout=log, stderr=subprocess.STDOUT)
    serve = ServeProcess(process, port, log_path)
    _wait(lambda: _ready(serve) == 200 or process.poll() is not None, 120, "serve to become ready")
    assert process.poll() is None, serve.log()
    return serve, argv


def _ready(serve: ServeProcess) -> int | None:
    try:
        return httpx.get(f"{serve.root}/health/ready", timeout=3).status_code
    except httpx.HTTPError:
        return None


def _wait(condition, timeout_s: float, what: str) -> float:
    """Poll until `condition()`; returns the seconds it took."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"timed out after {timeout_s} s waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - start


def _triton_pid(serve: ServeProcess) -> int:
    """The tritonserver among the serve process's children (each thread's: a restarted one is a child of the
    supervisor thread)."""
    pid = serve.process.pid
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0].endswith(b"/tritonserver"):
                    return int(child)
            except OSError:
                continue
    raise AssertionError(f"serve (pid {pid}) has no tritonserver child")


def _ended(pid: int, serve_pid: int) -> bool:
    """Not running, and not a zombie of serve's: no /proc entry, or a zombie that init holds (an orphaned stub
    re-parented to it; init reaps it when it gets to it, which took up to 2 s here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    state, ppid = stat[stat.rfind(")") + 2:].split()[:2]
    return state == "Z" and int(ppid) != serve_pid


def _stream(url: str, out: list, started: threading.Event) -> None:
    body = {"model": "tiny-llama", "prompt": "Supervision", "max_tokens": 500, "n": 4, "temperature": 0, "ignore_eos": True,
            "stream": True}
    lines = []
    with httpx.stream("POST", f"{url}/completions", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                lines.append(line)
                started.set()
    out.append((lines, time.monotonic()))


def _streams(url: str, num: int) -> tuple[list[threading.Thread], list]:
    threads, out, events = [], [], []
    for _ in range(num):
        events.append(threading.Event())
        threads.append(threading.Thread(target=_stream, args=(url, out, events[-1]), daemon=True))
        threads[-1].start()
    assert all(e.wait(60) for e in events)
    return threads, out


def _assert_ended_with_error_and_done(threads: list[threading.Thread], out: list, num: int) -> list[float]:
    for t in threads:
        t.join(60)
    assert len(out) == num
    for lines, _ in out:
        assert lines[-1] == "data: [DONE]", lines[-3:]
        assert '"code":"engine_unavailable"' in lines[-2], lines[-3:]
    return [ended for _, ended in out]


def _killed_and_restarted(serve: ServeProcess, sig: int) -> dict:
    """Send `sig` to serve's tritonserver alone (its stubs are left as they are); wait for its replacement to be
    ready. Returns the pids and the seconds from the signal to: readiness 503, the old server reaped and its stubs
    ended, readiness 200 again."""
    pid = _triton_pid(serve)
    stubs = [p for p in group_members(pid) if p != pid]
    assert stubs, "the Python backend runs the engine in a stub process"
    t0 = time.monotonic()
    os.kill(pid, sig)
    unready = _wait(lambda: _ready(serve) == 503, 60, "readiness to turn 503")
    _wait(lambda: not Path(f"/proc/{pid}").exists() and all(_ended(p, serve.process.pid) for p in stubs), 60,
          "the old server to be reaped and its stubs to end")
    reaped = time.monotonic() - t0
    _wait(lambda: _ready(serve) == 200, 60, "readiness to return")
    new_pid = _triton_pid(serve)
    assert new_pid != pid
    return {"t0": t0, "pid": pid, "new_pid": new_pid, "unready_s": unready, "reaped_s": reaped,
            "ready_s": time.monotonic() - t0}


def test_killed_then_hung_triton_is_restarted_and_serve_exits_5_at_the_third_failure(built_repo, trtpipe_home):
    serve, argv = _start_serve(built_repo, trtpipe_home, "serve-supervision.log", "--triton-max-failures", "3")
    try:
        triton_log = Path(serve.log().split("; log ", 1)[1].split(")", 1)[0])
        pid = _triton_pid(serve)
        for p in group_members(pid):  # the server and its stubs
            assert SECRET.encode() not in Path(f"/proc/{p}/environ").read_bytes()

        # A second serve on the same ports is refused in one line, before it starts or writes anything.
        size = triton_log.stat().st_size
        second = subprocess.run(argv, env={**os.environ, "TRTPIPE_HOME": str(trtpipe_home)}, capture_output=True,
                                text=True, timeout=60)
        assert second.returncode == 5, second.stderr  # a machine error (errors.MachineError)
        assert second.stderr.splitlines() == [
            f"Error: port {serve.port} (the frontend, 127.0.0.1) is already in use by pid {serve.process.pid} "
            f"({' '.join(argv)[:97]}...); choose a free one with --port or stop that process"]
        assert triton_log.stat().st_size == size

        # SIGKILL under load: every stream ends with an error event and [DONE] at once; Triton is back.
        threads, out = _streams(serve.url, 3)
        killed = _killed_and_restarted(serve, signal.SIGKILL)
        killed["streams_ended_s"] = max(_assert_ended_with_error_and_done(threads, out, 3)) - killed["t0"]
        assert killed["streams_ended_s"] < 2.0, killed
        assert killed["reaped_s"] < 2.0 and killed["ready_s"] < 30, killed
        client = OpenAI(base_url=serve.url, api_key="unused", max_retries=0)
        assert client.completions.create(model="tiny-llama", prompt="back", max_tokens=4).choices[0].text

        # SIGSTOP: the health check fails (1 s deadline), 2 s later Triton is killed and restarted.
        threads, out = _streams(serve.url, 1)
        hung = _killed_and_restarted(serve, signal.SIGSTOP)
        hung["streams_ended_s"] = max(_assert_ended_with_error_and_done(threads, out, 1)) - hung["t0"]
        assert hung["ready_s"] < 45, hung
        print(f"\nSIGKILL: {killed}\nSIGSTOP: {hung}")

        # The third failure within 300 s: serve stops and says why.
        os.kill(hung["new_pid"], signal.SIGKILL)
        assert serve.process.wait(60) == 5  # TritonStartError: a machine error
        assert (f"Error: tritonserver failed 3 times within 300 s, the most serve tolerates (--triton-max-failures 3); "
                f"the last failure: tritonserver (pid {hung['new_pid']}) was killed by SIGKILL.") in serve.log()
        _wait(lambda: all(_ended(p, serve.process.pid) for p in group_members(hung["new_pid"])), 5,
              "the last server's stubs to end")
        starts = [line for line in triton_log.read_text().splitlines() if line.startswith("=== trtpipe ")]
        assert [s.split(": ", 1)[1].split(" by pid")[0] for s in starts] == [
            "tritonserver start 1", "tritonserver start 2", "tritonserver start 3"]
        assert f"restart after: tritonserver (pid {killed['pid']}) was killed by SIGKILL" in starts[1]
        assert f"restart after: tritonserver (pid {hung['pid']}) failed the frontend's health check" in starts[2]
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait()


def test_with_api_servers_a_hung_triton_is_restarted_and_every_worker_is_ready_again(built_repo, trtpipe_home):
    serve, _ = _start_serve(built_repo, trtpipe_home, "serve-supervision-workers.log", "--api-servers", "2")
    try:
        serve.wait_all_ready()
        threads, out = _streams(serve.url, 2)
        hung = _killed_and_restarted(serve, signal.SIGSTOP)
        hung["streams_ended_s"] = max(_assert_ended_with_error_and_done(threads, out, 2)) - hung["t0"]
        serve.wait_all_ready()
        assert len(serve.worker_pids()) == 2 and hung["ready_s"] < 45, hung
        print(f"\nSIGSTOP with 2 API servers: {hung}")
        serve.process.send_signal(signal.SIGTERM)
        assert serve.process.wait(60) == 0, serve.log()
        _wait(lambda: all(_ended(p, serve.process.pid) for p in group_members(hung["new_pid"])), 5,
              "the server's stubs to end")
    finally:
        for client in serve.clients.values():
            client.close()
        if serve.process.poll() is None:
            serve.process.kill()
            serve.process.wait()
