"""`trtpipe serve --api-servers N` as a subprocess for e2e tests, and which worker process holds a connection.

The workers share one port (SO_REUSEPORT), so a test cannot address one directly; it finds out which worker
accepted a connection from the kernel's socket tables (/proc/net/tcp and each worker's open fds), and keeps
one client connection per worker where it must reach each of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx

from tests.conftest import free_port


@dataclass
class ServeProcess:
    process: subprocess.Popen
    port: int
    log_path: Path
    clients: dict[int, httpx.Client] = field(default_factory=dict)  # worker pid -> a connection it accepted

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.root + "/v1"

    def log(self) -> str:
        return self.log_path.read_text()

    def worker_pids(self) -> set[int]:
        """The API-server processes (spawned children running multiprocessing's spawn_main)."""
        pids = set()
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split() if children.exists() else ():
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    pids.add(int(pid))
            except OSError:
                pass
        return pids

    def owner(self, client_port: int) -> int | None:
        """The worker pid whose accepted socket is the other end of our connection from `client_port`."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if int(f[1].rsplit(":", 1)[1], 16) == self.port and int(f[2].rsplit(":", 1)[1], 16) == client_port:
                    inodes.add(f"socket:[{f[9]}]")
        for pid in self.worker_pids():
            try:
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    try:
                        if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                            return pid
                    except OSError:
                        continue
            except OSError:
                continue
        return None

    def pinned_clients(self, per_worker: int, timeout_s: float = 30.0) -> dict[int, list[httpx.Client]]:
        """`per_worker` kept-alive connections to each live worker: new clients until each worker has that many
        (a client whose connection landed on a worker that has enough already is closed)."""
        deadline = time.monotonic() + timeout_s
        pids = self.worker_pids()
        pinned: dict[int, list[httpx.Client]] = {pid: [] for pid in pids}
        while any(len(c) < per_worker for c in pinned.values()):
            if time.monotonic() > deadline:
                raise AssertionError(f"connections did not reach every worker: {pinned}")
            client = httpx.Client(base_url=self.root, timeout=60)
            with client.stream("GET", "/health/live") as r:
                pid = self.owner(stream_port(r))
                r.read()  # a fully read response leaves its connection in the pool
            if pid in pinned and len(pinned[pid]) < per_worker:
                pinned[pid].append(client)
            else:
                client.close()
        return pinned

    def client_per_worker(self) -> dict[int, httpx.Client]:
        """One kept-alive connection to each live worker, checked just now (closed with the ServeProcess).
        A client idle past uvicorn's keep-alive timeout reconnects, maybe to the other worker: re-pinned."""
        live = self.worker_pids()
        for pid, client in list(self.clients.items()):
            ok = False
            if pid in live:
                try:
                    with client.stream("GET", "/health/live") as r:
                        ok = self.owner(stream_port(r)) == pid
                        r.read()
                except httpx.HTTPError:
                    pass
            if not ok:
                self.clients.pop(pid).close()
        if set(self.clients) != live:
            for pid, clients in self.pinned_clients(1).items():
                if pid in self.clients:
                    clients[0].close()
                else:
                    self.clients[pid] = clients[0]
        return self.clients

    def wait_all_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        for client in self.client_per_worker().values():
            while client.get("/health/ready").status_code != 200:
                assert time.monotonic() < deadline, self.log()
                time.sleep(0.1)


def stream_port(response: httpx.Response) -> int:
    """The local port of the connection an httpx (or openai-client) response came on."""
    return response.extensions["network_stream"].get_extra_info("socket").getsockname()[1]


@contextmanager
def serve_api_servers(triton, repo: Path, home: Path, *options: str, num: int = 2,
                      log_name: str = "serve-api-servers.log") -> Iterator[ServeProcess]:
    """`trtpipe serve --triton <the session Triton> --api-servers num` on a free port, every worker ready."""
    port = free_port()
    argv = [sys.executable, "-m", "trtpipe", "serve", "--repo", str(repo), "--port", str(port),
            "--triton", triton.grpc_url, "--api-servers", str(num), *options]
    log_path = home / log_name
    with open(log_path, "w") as log:
        process = subprocess.Popen(argv, env={**os.environ, "TRTPIPE_HOME": str(home)}, stdout=log,
                                   stderr=subprocess.STDOUT)
    sp = ServeProcess(process, port, log_path)
    try:
        deadline = time.monotonic() + 120
        while "OpenAI frontend on" not in sp.log():  # printed once every worker has started
            assert process.poll() is None and time.monotonic() < deadline, sp.log()
            time.sleep(0.2)
        assert len(sp.worker_pids()) == num, sp.log()
        sp.wait_all_ready()
        yield sp
    finally:
        for client in sp.clients.values():
            client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
