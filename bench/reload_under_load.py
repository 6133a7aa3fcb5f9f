"""Publish and roll back while streams run: which versions Triton leaves UNLOADING, and which Python backend stub
processes outlive their version (issue 20, "clean reloads under load").

    python -m bench.reload_under_load [--cycles 3] [--streams 8] [--no-cancel]

Builds tiny-llama into a temporary TRTPIPE_HOME, starts Triton and the OpenAI frontend, runs `--streams` client
threads (every other one closes its stream part-way, as a client that goes away, unless --no-cancel), then
publishes a new build and rolls back `--cycles` times with no pause, and finally prints Triton's repository index
and the triton_python_backend_stub processes of that server (version, RSS MiB), once a second for 8 s, and a
RESULT line. The index does not show an earlier load of a version number that was loaded again: count the stubs.

What it found (Triton 2.51, nvidia-pytriton 0.7.0, 2 shared cores):
- Root cause: the frontend cancelled every gRPC call in a `finally`, also after the final response. A cancel
  that lands between Triton's final response and its status races Triton 2.51's gRPC stream handler, which then
  keeps the stream's state, the inference request in it, and so the model version: unloaded by a publish or
  rollback, that version stayed UNLOADING for good, its stub alive. Waiting for versions to settle could never
  succeed. Mid-stream cancels (clients that go away) raced it too once versions really unloaded: tritonserver
  aborted (gRPC `ASSERTION FAILED: prior > 0`; a SIGSEGV) in 2 of 9 runs. Periodic gc.collect() in the stub
  changed nothing (checked); our model's finalize() was never reached for a stuck version (its loop was idle).
- Fix: the frontend never cancels a call Triton may still answer (serve/engine_client/client.py): after the
  final response it waits for the status off the request's path; a request its client left is ended by a
  tensorrt_llm `stop` request to the version serving it, and its stream then ends as any other. A version
  number is not loaded again while an earlier load of it still drains (repo/triton_control.py).
- Before (main, 2026-12-05, 3 cycles): 1 version UNLOADING and 5 stubs (497 MiB RSS) for 1 live version; next
  run 0 UNLOADING but 2 stubs (194 MiB: an earlier load of version 1 draining for good, out of the index); 0
  failed requests. Earlier runs (some with debugging code in the model): 1-2 UNLOADING or out of the index,
  2-3 stubs, in 4 of 5 runs; with --no-cancel in 1 of 2.
  After: 0 UNLOADING, 1 stub (92-95 MiB) in 3 of 3 runs, 0 failed requests (323-326 streams ended vs 260-264).
- The rest (2026-12-05, later): the API cancels a request's task when its client disconnects, and grpc.aio
  cancels the call when a read() is cancelled, so a client that went away still sent Triton a gRPC cancel; the
  `stop` path above only ran for requests left without a cancel. tests/e2e/test_reload_under_load.py (every
  other stream closed by its client) on 2 loaded cores: before, 9 runs: 4 tritonserver SIGSEGVs (each in
  ModelStreamInferHandler::Process: the cancel race Triton fixed in server#8078; it then hung in its crash
  handler, so the test failed on a 60 s load timeout or ConnectionRefused), 1 version left UNLOADING with 3
  stubs; a variant that never reloads a version number crashed too (1 of 5). After shielding the read
  (serve/engine_client/client.py): 32 of 32 runs clean. This bench, 3 cycles, once: 0 UNLOADING, 1 stub
  (93 MiB), 365 streams ended, 0 failed.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stubs(pid: int) -> list[tuple[str, int]]:
    """(model.py path, RSS in MiB) of each Python backend stub of the server with this pid."""
    out = subprocess.run(["ps", "-ww", "-o", "rss=,args=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [(line.split()[2], int(line.split()[0]) // 1024) for line in out.splitlines()
            if "triton_python_backend_stub" in line]


def _streams(url: str, num: int, stop: threading.Event, done: list, errors: list, cancel: bool = True
             ) -> list[threading.Thread]:
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="unused", max_retries=0)

    def run(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                stream = client.completions.create(model="tiny-llama", prompt="Once upon", max_tokens=200,
                                                   temperature=0, stream=True, extra_body={"ignore_eos": True})
                for k, _ in enumerate(stream, 1):
                    if cancel and i % 2 and k == 20 + n % 30:
                        stream.close()
                        break
                done.append(i)
            except Exception as e:  # noqa: BLE001 - counted and printed
                errors.append(repr(e)[:200])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(num)]
    for t in threads:
        t.start()
    return threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--no-cancel", action="store_true", help="no client closes its stream early")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="trtpipe-reload-"))
    os.environ["TRTPIPE_HOME"] = str(home)
    import tritonclient.http as httpclient
    import uvicorn

    from trtpipe.build import build
    from trtpipe.config import load_config
    from trtpipe.repo.triton_control import record_server
    from trtpipe.repo.versions import rollback
    from trtpipe.serve.api.app import FrontendSettings, create_app
    from trtpipe.serve.process.launcher import TritonPorts, TritonServer, wait_http_ok

    repo = home / "model_repository"
    build(load_config("tiny-llama"), repo)
    server = TritonServer(repo, TritonPorts(_free_port(), _free_port(), _free_port()),
                          log_path=home / "tritonserver.log", exit_timeout_s=2).start()
    record_server(repo, server.http_url, server.process.pid)
    port = _free_port()
    app = create_app(FrontendSettings(repo=repo, triton_grpc_url=server.grpc_url, max_running=64, max_waiting=64))
    frontend = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=frontend.run, daemon=True).start()
    wait_http_ok(f"http://127.0.0.1:{port}/health/ready", 30, interval_s=0.1)
    stop, done, errors = threading.Event(), [], []
    threads = _streams(f"http://127.0.0.1:{port}/v1", args.streams, stop, done, errors, not args.no_cancel)
    time.sleep(1)
    variants = (["quantization.format=int8_wo"], ["quantization.format=int4_wo"], ["dtype=float32"])
    for cycle in range(args.cycles):
        # A new engine for each of the first three cycles, then a new serving spec over a cached one.
        overrides = variants[cycle] if cycle < len(variants) else [f"serving.stream_interval={cycle}"]
        version = build(load_config("tiny-llama", overrides), repo, keep=args.cycles + 2).published.version
        print(f"published {version}; rolled back to {rollback(repo, 'tiny-llama')}; "
              f"stubs {len(_stubs(server.process.pid))}")
    stop.set()
    for t in threads:
        t.join()
    client = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    for second in range(8):
        states = [(m.get("version"), m.get("state")) for m in client.get_model_repository_index()]
        stubs = _stubs(server.process.pid)
        print(f"{second} s: {states}; stubs: {[(Path(p).parent.name, rss) for p, rss in stubs]}")
        time.sleep(1)
    unloading = [v for v, state in states if state == "UNLOADING"]
    print(f"RESULT cycles={args.cycles} streams={args.streams} cancel={not args.no_cancel}: "
          f"{len(unloading)} versions UNLOADING {unloading}, {len(stubs)} stubs ({sum(r for _, r in stubs)} MiB RSS) "
          f"for 1 live version; {len(done)} streams ended, {len(errors)} failed {errors[:3]}")
    print(f"Triton log: {home / 'tritonserver.log'}")
    frontend.should_exit = True
    server.stop()


if __name__ == "__main__":
    main()
