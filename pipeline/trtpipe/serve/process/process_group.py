"""tritonserver's process group: its exit seen without reaping it, every member killed, every member gone.

tritonserver starts in a session (and process group) of its own; its Python-backend stubs
(triton_python_backend_stub, one per model instance) inherit the group. When tritonserver dies, the stubs are
orphaned: they are re-parented to init and live on, holding their memory, as long as the dead server's pid
still exists (they watch their parent's pid, which a zombie keeps). So a death is handled in this order:
see the exit without reaping (waitid WNOWAIT: the zombie keeps the pid, so the group id cannot be reused), kill
the whole group, reap the server, then wait for the other members to be gone. Where `serve` is itself pid 1
(a container without an init), the orphans are re-parented to us: those we reap by pid, never with
waitpid(-1), which would steal the exit status of other children (the API servers, subprocess.Popen's own).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def peek_exit(pid: int) -> int | None:
    """The child's exit as a Popen returncode (negative: killed by that signal), or None while it runs. The
    child is left a zombie: reaping stays with its Popen."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped
        return 0
    if info is None:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


def describe_exit(returncode: int) -> str:
    """'was killed by SIGKILL', 'exited with code 1'."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def group_members(pgid: int, proc: Path = Path("/proc")) -> list[int]:
    """Pids whose process group is `pgid` (zombies included), from /proc/<pid>/stat."""
    members = []
    for stat in proc.glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_gone(pids: list[int], timeout_s: float = 5.0, proc: Path = Path("/proc")) -> list[int]:
    """Wait until each pid has ended: reaped when it is our child, else until it has no /proc entry or is a
    zombie of another parent (init's to reap). Returns the pids still running at the deadline."""
    deadline = time.monotonic() + timeout_s
    left = list(pids)
    while left:
        left = [pid for pid in left if not _ended(pid, proc)]
        if not left or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return left


def _ended(pid: int, proc: Path) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return True  # our child, reaped now
    except ChildProcessError:
        pass  # not our child
    fields = _stat_fields(proc / str(pid) / "stat")
    return fields is None or fields[0] == "Z"


def _stat_fields(stat: Path) -> list[str] | None:
    """The fields after `(comm)` in /proc/<pid>/stat: state, ppid, pgrp, ... (None: no such process)."""
    try:
        text = stat.read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()
