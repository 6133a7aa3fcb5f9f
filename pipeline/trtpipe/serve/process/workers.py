"""`trtpipe serve --api-servers N`: N frontend processes on one port, supervised by the serve process.

Why: one frontend process spends 130-205 us of CPU per streamed token (bench/frontend_cpu.py), a ceiling of a
few thousand tokens/s, below what one GPU generates; more processes raise the ceiling (vLLM's
--api-server-count, trtllm-serve's and SGLang's multi-process frontends do the same).

The port: every worker binds its own listening socket with SO_REUSEPORT, and the kernel spreads new
connections evenly over them (a hash of each connection). Not one pre-bound socket handed to every worker:
there, every worker waits on one accept queue and asyncio accepts all pending connections at once in whichever
worker wakes first, so a burst of connections lands on one process. The cost: connections still in a dying
worker's own accept queue are reset (an accepted one is lost with its worker either way). The supervisor holds
a bound, not listening, SO_REUSEPORT socket on the port for its whole life: an address in use fails `serve`
at once with a clear error, and no other program can take the port while a worker restarts. Linux only.

Shared: admission counts and the speculation acceptance window (shared_limits.py), metrics (metrics.py,
prometheus multiprocess mode). Each worker's own: gRPC channels to the same Triton(s), health checks and
canaries, the model registry (each notices a publish or rollback itself from config.pbtxt).

Triton's health, for the Triton supervisor in the serve process (triton_supervisor.py): each worker copies its
frontend's verdict on Triton into its cell of a shared array every HEALTH_REPORT_S; Triton counts as unhealthy
when no live worker finds it healthy and one finds it not.

Supervision: a worker that exits is logged and replaced (its admission counts zeroed first), after a backoff
when it keeps dying young. SIGTERM/SIGINT: forwarded once as SIGTERM to every worker, each drains exactly as a
single server does; then the caller stops Triton and the process exits 0. A second signal is forwarded again
(workers end at once).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

from trtpipe.errors import TritonStartError
from trtpipe.serve.process.shared_limits import SharedCounters

log = logging.getLogger("trtpipe.serve")
START_TIMEOUT_S = 120.0
YOUNG_S = 10.0  # a worker that dies younger than this is restarted after a growing backoff
MAX_BACKOFF_S = 30.0
POLL_S = 0.2
HEALTH_REPORT_S = 0.25
UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2  # a worker's verdict on Triton, in the shared array


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(index: int, settings, counters: SharedCounters, host: str, port: int, drain_timeout_s: float,
               ready, triton_health=None) -> None:
    """One API server (the target of a spawned process)."""

    from trtpipe.serve.api.app import create_app
    from trtpipe.serve.api.transport import uvicorn_config
    from trtpipe.serve.process.draining import DrainingServer
    from trtpipe.serve.process.launcher import _die_with_parent

    os.setpgid(0, 0)  # a Ctrl-C in the terminal reaches the supervisor, which forwards one SIGTERM
    _die_with_parent()
    counters.worker = index
    sock = reuseport_socket(host, port)
    app = create_app(settings, limits=counters)
    config = uvicorn_config(app, host=host, log_level="warning", timeout_graceful_shutdown=10, backlog=2048)
    server = DrainingServer(config, app.state.frontend.drain, drain_timeout_s, on_started=ready.set)
    if triton_health is not None:
        threading.Thread(target=_report_triton_health, args=(app.state.frontend, triton_health, index),
                         name="triton-health", daemon=True).start()
    server.run(sockets=[sock])  # uvicorn calls listen() on it


def _report_triton_health(frontend, verdicts, index: int) -> None:
    from trtpipe.serve.process.triton_supervisor import replica_verdict

    codes = {None: UNKNOWN, True: HEALTHY, False: UNHEALTHY}
    while True:
        verdicts[index] = codes[replica_verdict(frontend)]
        time.sleep(HEALTH_REPORT_S)


@dataclass
class Worker:
    index: int
    process: multiprocessing.Process
    ready: object  # multiprocessing.Event
    started_at: float
    failures: int = 0  # consecutive deaths younger than YOUNG_S


class Supervisor:
    def __init__(self, settings, num_workers: int, host: str, port: int, drain_timeout_s: float):
        if not hasattr(socket, "SO_REUSEPORT") or not sys.platform.startswith("linux"):
            raise TritonStartError("--api-servers above 1 needs Linux (SO_REUSEPORT spreading connections)",
                                   fix="run with --api-servers 1")
        self.settings, self.num_workers, self.host, self.port = settings, num_workers, host, port
        self.drain_timeout_s = drain_timeout_s
        self._ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no inherited event loop or gRPC
        self.counters = SharedCounters(num_workers, window_rounds=settings.speculation.window_rounds, ctx=self._ctx)
        self.workers: list[Worker] = []
        self.triton_health = self._ctx.RawArray("b", num_workers)  # each worker's verdict: UNKNOWN, HEALTHY, ...
        self._signals = 0

    def triton_verdict(self) -> bool | None:
        """True when some worker finds Triton healthy, False when none does and one finds it not, else None."""
        verdicts = list(self.triton_health)
        if HEALTHY in verdicts:
            return True
        return False if UNHEALTHY in verdicts else None

    def stop(self) -> None:
        """Stop every worker as a SIGTERM to serve would (each drains); run() then returns."""
        self._forward(signal.SIGTERM, None)

    def _spawn(self, index: int, failures: int = 0) -> Worker:
        ready = self._ctx.Event()
        process = self._ctx.Process(target=run_worker, name=f"trtpipe-api-{index}", daemon=False,
                                    args=(index, self.settings, self.counters, self.host, self.port,
                                          self.drain_timeout_s, ready, self.triton_health))
        process.start()
        log.info("API server %d started (pid %d)", index, process.pid)
        return Worker(index, process, ready, time.monotonic(), failures)

    def run(self, on_ready: Callable[[str], None] = lambda url: None) -> None:
        with tempfile.TemporaryDirectory(prefix="trtpipe-metrics-") as metrics_dir, self._port_held(), \
                self._signals_forwarded():
            # Read by prometheus_client when each spawned worker imports it: counters go to files there.
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
            try:
                self.workers = [self._spawn(i) for i in range(self.num_workers)]
                self._wait_started()
                if not self._signals:
                    on_ready(f"http://{self.host}:{self.port}/v1")
                self._supervise()
                self._wait_stopped()
            finally:
                os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
                for w in self.workers:
                    if w.process.is_alive():
                        w.process.kill()
                        w.process.join(5)

    def _wait_started(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        for w in self.workers:
            while not w.ready.wait(POLL_S):
                if self._signals:
                    return
                if not w.process.is_alive():
                    raise TritonStartError(f"API server {w.index} exited with code {w.process.exitcode} during "
                                           "start-up", fix="read its error above")
                if time.monotonic() > deadline:
                    raise TritonStartError(f"API server {w.index} did not start within {START_TIMEOUT_S:.0f} s",
                                           fix="read the log above")

    def _supervise(self) -> None:
        restart_at: dict[int, float] = {}
        while not self._signals:
            time.sleep(POLL_S)
            now = time.monotonic()
            for i, w in enumerate(self.workers):
                if self._signals:
                    break
                if w.process.is_alive():
                    continue
                if i not in restart_at:
                    w.process.join()
                    young = now - w.started_at < YOUNG_S
                    w.failures = w.failures + 1 if young else 0
                    delay = min(MAX_BACKOFF_S, 0.5 * 2 ** (w.failures - 1)) if young else 0.0
                    log.warning("API server %d (pid %d) exited with code %s; restarting it%s", w.index,
                                w.process.pid, w.process.exitcode, f" in {delay:.1f} s" if delay else "")
                    self.triton_health[w.index] = UNKNOWN
                    if not self.counters.clear_worker(w.index):
                        log.error("admission is stuck: the shared lock is held by a dead API server; restart "
                                  "trtpipe serve")
                    restart_at[i] = now + delay
                if now >= restart_at[i]:
                    del restart_at[i]
                    self.workers[i] = self._spawn(w.index, w.failures)

    def _wait_stopped(self) -> None:
        # Each worker drains within drain_timeout_s, then takes a few seconds to end what is left and stop.
        deadline = time.monotonic() + self.drain_timeout_s + 20
        for w in self.workers:
            w.process.join(max(0.0, deadline - time.monotonic()))
            if w.process.is_alive():
                log.warning("API server %d did not stop in time; killing it", w.index)
                w.process.kill()
                w.process.join(5)

    def _forward(self, sig: int, frame) -> None:
        self._signals += 1
        for w in self.workers:
            if w.process.is_alive():
                try:
                    os.kill(w.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    @contextmanager
    def _signals_forwarded(self):
        previous = {sig: signal.signal(sig, self._forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @contextmanager
    def _port_held(self):
        try:
            holder = reuseport_socket(self.host, self.port)
        except OSError as e:
            raise TritonStartError(f"cannot bind the frontend to {self.host}:{self.port}: {e.strerror}",
                                   fix="choose a free --port, or stop what is using it") from None
        try:
            yield
        finally:
            holder.close()
