"""Before anything starts: every port `serve` will listen on is free, or one line says which is not, who holds it
and the flag to change.

Why: a busy port used to surface as 50 lines of Triton's own log after Triton had tried (and, with the log
opened for writing, had clobbered the running server's log). Binding each port first, as the servers will
(SO_REUSEADDR, no SO_REUSEPORT, so a second `serve --api-servers N` cannot silently share the first one's
port), answers the question in milliseconds.

Who holds a port: the listening socket's inode from /proc/net/tcp and /proc/net/tcp6, then the process with an
open fd on `socket:[inode]` under /proc/*/fd (Linux; `ss` and `lsof` are often not installed). Processes of
other users are not readable without privileges: then the message says so.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from trtpipe.errors import TritonStartError

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class PortUse:
    """A port `serve` is about to listen on: what for, where, and the flag that chooses it."""

    what: str  # "the frontend", "Triton's gRPC port"
    host: str
    port: int
    flag: str  # "--port", "--grpc-port"


def bind_port(use: PortUse) -> socket.socket:
    """A socket bound to the port as the server would bind it (not listening), or TritonStartError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(use.host, use.port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise TritonStartError(f"cannot resolve {use.host!r} for {use.what}: {e.strerror}; fix the address "
                               f"({use.flag} names only the port)") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # as asyncio's create_server (uvicorn) binds: IPv6 only
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
    except OSError as e:
        sock.close()
        raise TritonStartError(_bind_failure(use, e)) from None
    return sock


def check_ports(uses: list[PortUse]) -> None:
    """Every port free (and no port named twice), or TritonStartError with the one-line answer."""
    seen: dict[int, PortUse] = {}
    for use in uses:
        if use.port in seen:
            first = seen[use.port]
            raise TritonStartError(f"port {use.port} is asked for twice: for {first.what} ({first.flag}) and for "
                                   f"{use.what} ({use.flag}); give one of them another port")
        seen[use.port] = use
    for use in uses:
        bind_port(use).close()


def _bind_failure(use: PortUse, e: OSError) -> str:
    where = f"port {use.port} ({use.what}, {use.host})"
    if e.errno == errno.EADDRINUSE:
        return f"{where} is already in use by {port_holder(use.port)}; choose a free one with {use.flag} " \
               "or stop that process"
    if e.errno == errno.EACCES:
        return f"{where} needs privileges to bind (ports below 1024); choose another with {use.flag}"
    return f"cannot bind {where}: {e.strerror}; check the address, or choose another port with {use.flag}"


def port_holder(port: int, proc: Path = Path("/proc")) -> str:
    """'pid 1234 (tritonserver --model-repository=...)' for the process listening on `port`, as far as it can
    be known."""
    inodes = listening_inodes(port, proc)
    if not inodes:
        return "another process (no listening socket is visible: maybe another user's, or a container's)"
    for pid_dir in proc.glob("[0-9]*"):
        try:
            fds = os.listdir(pid_dir / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(pid_dir / "fd" / fd) in inodes:
                    return f"pid {pid_dir.name} ({_command(pid_dir)})"
            except OSError:
                continue
    return "a process this user cannot inspect (run as its owner, or as root, to see which)"


def listening_inodes(port: int, proc: Path = Path("/proc")) -> set[str]:
    """`socket:[inode]` of each TCP socket listening on `port` (IPv4 and IPv6) in this network namespace."""
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            if len(fields) > 9 and fields[3] == TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(f"socket:[{fields[9]}]")
    return found


def _command(pid_dir: Path, limit: int = 100) -> str:
    try:
        argv = (pid_dir / "cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    text = " ".join(" ".join(a.decode(errors="replace").split()) for a in argv) or "?"  # one line
    return text if len(text) <= limit else text[:limit - 3] + "..."
