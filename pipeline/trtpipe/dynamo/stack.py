"""One host on Dynamo: Dynamo's OpenAI frontend (KV router) and N trtpipe workers per published model.

No etcd and no NATS: discovery is a directory (Dynamo's `file` backend), requests go over TCP, KV events and
load over ZMQ, and every address Dynamo advertises is 127.0.0.1. The discovery directory is made fresh for each
start, so registrations a killed process left behind are never read.
NOTE: Dynamo 1.6.1 binds its ZMQ event sockets on 0.0.0.0 whatever the host settings (it still advertises and
connects to 127.0.0.1); run the stack in a private network namespace (`unshare -n`) where that matters.

Supervision reuses serve/process: each process runs in a session of its own; a dead one is seen without
reaping (process_group.peek_exit), its group is killed and reaped, and a worker is restarted after
RestartPolicy's backoff, or the stack gives up when one keeps failing (as with Triton). Drain: workers get
SIGTERM first (Dynamo's Worker unregisters each from discovery, so the frontend stops routing to it, then lets
its requests finish), then the frontend.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from trtpipe.errors import MachineError
from trtpipe.serve.process.launcher import THREAD_ENV, engine_thread_env, usable_cpus
from trtpipe.serve.process.process_group import describe_exit, group_members, kill_group, peek_exit, wait_gone
from trtpipe.serve.process.triton_supervisor import RestartPolicy

log = logging.getLogger("trtpipe.dynamo")
LOOPBACK = "127.0.0.1"


def free_system_port() -> int:
    """A free port for a worker's system server. NOTE: Dynamo 1.6.1 reads DYN_SYSTEM_PORT as an i16, so the
    kernel's ephemeral ports (32768 and up) are refused at start; pick one below."""
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise MachineError("no free port in 20000-31999 for a Dynamo worker's system server", where=LOOPBACK,
                       fix="free some ports in that range")


@dataclass
class StackOptions:
    repo: Path
    models: list[str]
    host: str = LOOPBACK
    port: int = 8080
    workers: int = 2  # per model
    router_mode: str = "kv"  # Dynamo's --router-mode: kv, round-robin, random, ...
    # A request whose worker is unreachable or dies is sent again to another worker this many times (Dynamo's
    # request migration, which carries the tokens generated so far); 0 fails it.
    migration_limit: int = 3
    namespace: str = "trtpipe"
    work_dir: Path | None = None
    drain_timeout_s: float = 30.0
    start_timeout_s: float = 120.0
    max_failures: int = 5
    engine_threads: int | None = None  # BLAS threads per worker [default: the cores but one, shared by the workers]
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class Member:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    system_port: int | None = None  # a worker's Dynamo system server: /health, /metrics, /engine/control/stats

    @property
    def system_url(self) -> str:
        return f"http://{LOOPBACK}:{self.system_port}"


class DynamoStack:
    def __init__(self, opts: StackOptions):
        self.opts = opts
        self.work = Path(opts.work_dir or tempfile.mkdtemp(prefix="trtpipe-dynamo-"))
        self.discovery = self.work / "discovery"
        self.policy = RestartPolicy(max_failures=opts.max_failures)
        self.workers: list[Member] = []
        self.frontend: Member | None = None

    @property
    def url(self) -> str:
        return f"http://{self.opts.host}:{self.opts.port}/v1"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DYN_DISCOVERY_BACKEND": "file", "DYN_FILE_KV": str(self.discovery), "DYN_REQUEST_PLANE": "tcp",
            "DYN_EVENT_PLANE": "zmq", "DYN_NAMESPACE": self.opts.namespace,
            "DYN_TCP_RPC_HOST": LOOPBACK, "DYN_TCP_RESPONSE_STREAM_HOST": LOOPBACK, "DYN_EVENT_PLANE_HOST": LOOPBACK,
            "DYN_SYSTEM_HOST": LOOPBACK,
            # Dynamo's fixed wait between unregistering and cleanup; the worker's cleanup waits for its requests
            # in flight itself (--drain-timeout), and no longer than they take.
            "DYN_GRACEFUL_SHUTDOWN_GRACE_PERIOD_SECS": "0",
            "DYN_LOG": env.get("DYN_LOG", "warn"),
            # Dynamo's frontend caches model cards under $HOME/.cache; keep a stack's own to itself.
            "XDG_CACHE_HOME": str(self.work / "cache"),
        })
        env.update(self.opts.extra_env)
        return env

    # --- start -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        shutil.rmtree(self.discovery, ignore_errors=True)
        self.discovery.mkdir(parents=True)
        py = sys.executable
        for model in self.opts.models:
            for i in range(self.opts.workers):
                name = f"worker-{model}-{i}"
                self.workers.append(Member(name, [
                    py, "-m", "trtpipe.dynamo.worker", "--repo", str(self.opts.repo), "--model", model,
                    "--namespace", self.opts.namespace, "--card-dir", str(self.work / "cards"),
                    "--instance-file", str(self.work / f"{name}.instance"),
                    "--drain-timeout", str(self.opts.drain_timeout_s)],
                    self.work / f"{name}.log", system_port=free_system_port()))
        self.frontend = Member("frontend", [
            py, "-m", "dynamo.frontend", "--router-mode", self.opts.router_mode, "--http-host", self.opts.host,
            "--http-port", str(self.opts.port), "--namespace", self.opts.namespace, "--no-kserve-grpc-server",
            "--migration-limit", str(self.opts.migration_limit)],
            self.work / "frontend.log")
        for member in [*self.workers, self.frontend]:
            self._spawn(member)
        self.wait_ready(self.opts.start_timeout_s)

    def _spawn(self, member: Member) -> None:
        env = self.env()
        if member.system_port is not None:
            env.update(self._engine_thread_env())
            env["DYN_SYSTEM_PORT"] = str(member.system_port)
        with open(member.log_path, "ab") as out:
            member.proc = subprocess.Popen(member.argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True)

    def worker_stats(self, member: Member, timeout_s: float = 5.0) -> dict:
        """The worker's engine stats (version, requests, KV blocks, prefix-cache tokens, aborts)."""
        r = httpx.post(f"{member.system_url}/engine/control/stats", json={}, timeout=timeout_s)
        r.raise_for_status()
        return r.json()

    def _engine_thread_env(self) -> dict[str, str]:
        """As for the Triton `serve` starts (launcher.engine_thread_env says why): OpenBLAS would otherwise give
        every worker every core, its threads spinning against each other and against the frontend."""
        threads = self.opts.engine_threads
        if threads is None and not any(name in os.environ for name in THREAD_ENV):
            threads = max(1, (usable_cpus() - 1) // max(1, len(self.workers)))
        return engine_thread_env(threads)

    def registered_workers(self) -> int:
        """Worker instances in discovery (generate endpoints): the frontend routes to exactly these."""
        instances = self.discovery / "v1" / "instances"
        return sum(1 for p in instances.glob("*") if "%2Fgenerate%2F" in p.name) if instances.is_dir() else 0

    def wait_ready(self, timeout_s: float, workers: int | None = None) -> None:
        """Until every model is listed by the frontend and `workers` (default: all) instances are registered."""
        want = len(self.workers) if workers is None else workers
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._raise_if_dead()
            try:
                listed = {m["id"] for m in httpx.get(f"{self.url}/models", timeout=2).json()["data"]}
            except (httpx.HTTPError, ValueError, KeyError):
                listed = set()
            if set(self.opts.models) <= listed and self.registered_workers() >= want:
                return
            time.sleep(0.1)
        raise MachineError(f"the Dynamo stack did not become ready within {timeout_s:.0f} s",
                           where=str(self.work), fix=f"read the logs in {self.work}")

    def _raise_if_dead(self) -> None:
        for member in [*self.workers, self.frontend]:
            if member is not None and member.proc is not None and peek_exit(member.proc.pid) is not None:
                raise MachineError(f"Dynamo's {member.name} {describe_exit(member.proc.poll() or 0)} while starting",
                                   where=str(member.log_path), fix=f"read {member.log_path}")

    # --- supervise -------------------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """One supervision pass: restart dead workers (after backoff); give up when they keep dying, or when the
        frontend dies. Returns what was restarted."""
        assert self.frontend is not None and self.frontend.proc is not None
        code = peek_exit(self.frontend.proc.pid)
        if code is not None:
            self._reap(self.frontend)
            raise MachineError(f"Dynamo's frontend {describe_exit(code)}", where=str(self.frontend.log_path),
                               fix=f"read {self.frontend.log_path}")
        restarted = []
        for member in self.workers:
            code = peek_exit(member.proc.pid)
            if code is None:
                continue
            self._reap(member)
            self._forget(member)
            why = f"{member.name} {describe_exit(code)}"
            backoff = self.policy.record_failure(time.monotonic())
            if backoff is None:
                raise MachineError(f"{why}: {self.opts.max_failures} worker failures within "
                                   f"{self.policy.window_s:.0f} s", where=str(member.log_path),
                                   fix=f"read {member.log_path}")
            log.warning("%s; restarting it in %.1f s", why, backoff)
            time.sleep(backoff)
            self._spawn(member)
            restarted.append(member.name)
        return restarted

    def kill(self, member: Member, sig: int = signal.SIGKILL) -> None:
        os.killpg(member.proc.pid, sig)

    def _forget(self, member: Member) -> None:
        """Remove a dead worker's registrations (a killed process cannot unregister itself), so the frontend stops
        offering it requests. File discovery names an instance's entries after its id in hex."""
        id_file = self.work / f"{member.name}.instance"
        try:
            suffix = f"%2F{int(id_file.read_text()):x}"
        except (OSError, ValueError):
            return
        for bucket in ("instances", "mdc"):
            for path in (self.discovery / "v1" / bucket).glob("*"):
                if path.name.endswith(suffix):
                    path.unlink(missing_ok=True)
        id_file.unlink(missing_ok=True)

    def _reap(self, member: Member) -> None:
        pgid = member.proc.pid
        kill_group(pgid)
        member.proc.wait()
        wait_gone(group_members(pgid), 5.0)

    # --- stop ------------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Drain: SIGTERM to every worker (unregistered at once, in-flight requests finish within the drain
        budget), then to the frontend; whatever is left at the deadline is killed with its process group."""
        live = [m for m in self.workers if m.proc is not None and m.proc.poll() is None]
        for member in live:
            member.proc.send_signal(signal.SIGTERM)
        self._wait_or_kill(live, self.opts.drain_timeout_s + 5)
        if self.frontend is not None and self.frontend.proc is not None and self.frontend.proc.poll() is None:
            self.frontend.proc.send_signal(signal.SIGTERM)
            self._wait_or_kill([self.frontend], 10)

    def _wait_or_kill(self, members: list[Member], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for member in members:
            try:
                member.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s: killed", member.name, timeout_s)
            self._reap(member)

    def __enter__(self) -> DynamoStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def servable_models(repo: Path) -> list[str]:
    """Published models a trtpipe Dynamo worker can serve (the reference engine's)."""
    from trtpipe.repo import layout
    from trtpipe.spec import ServingSpec

    found = []
    for model in layout.published_models(repo):
        model_dir = repo / layout.engine_model_name(model)
        spec = ServingSpec.read(model_dir / str(layout.live_version(model_dir)) / "spec.json")
        if spec.backend == "reference":
            found.append(model)
    return found


def serve_forever(opts: StackOptions, on_ready=lambda url: None, poll_s: float = 0.5) -> None:
    """Start the stack, supervise it until SIGTERM/SIGINT, then drain it (a second signal is not needed: the
    drain is bounded by opts.drain_timeout_s)."""
    stopping = False

    def on_signal(sig, frame) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    stack = DynamoStack(opts)
    try:
        stack.start()
        on_ready(stack.url)
        while not stopping:
            stack.check()
            time.sleep(poll_s)
        log.warning("draining: workers unregister, requests in flight get up to %.0f s", opts.drain_timeout_s)
    finally:
        stack.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
