"""A dead server's process group: its exit seen without reaping, its orphans killed, nothing left behind
(serve.process.process_group and TritonServer.kill), on a real process group: a shell whose two children stand
in for tritonserver's Python-backend stubs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from trtpipe.serve.process.launcher import TritonServer
from trtpipe.serve.process.process_group import describe_exit, group_members, peek_exit


def _group_with_two_children() -> tuple[subprocess.Popen, list[int]]:
    leader = subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60 & echo started; wait"], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert leader.stdout.readline() == b"started\n"
    return leader, [pid for pid in group_members(leader.pid) if pid != leader.pid]


def _state(pid: int) -> str | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2]


def test_a_killed_leader_stays_a_zombie_until_reaped_and_its_children_live_on():
    leader, children = _group_with_two_children()
    try:
        assert len(children) == 2
        assert peek_exit(leader.pid) is None
        os.kill(leader.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while peek_exit(leader.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert peek_exit(leader.pid) == -signal.SIGKILL  # read twice: peeking does not reap
        assert _state(leader.pid) == "Z" and leader.returncode is None
        # Orphans, still alive: sleeping, or running (R) for the moment their reparenting wakes them.
        assert [_state(pid) in ("S", "R") for pid in children] == [True, True]
    finally:
        os.killpg(leader.pid, signal.SIGKILL)
        leader.wait()


def test_kill_reaps_the_server_and_ends_every_orphan_of_its_group(tmp_path):
    leader, children = _group_with_two_children()
    server = TritonServer(tmp_path)
    server.process = leader
    os.kill(leader.pid, signal.SIGKILL)  # the server dies, its children do not
    while server.exit_code() is None:
        time.sleep(0.01)
    assert server.exit_code() == -signal.SIGKILL
    server.kill()
    assert leader.returncode == -signal.SIGKILL
    assert _state(leader.pid) is None  # reaped: no zombie
    assert [_state(pid) for pid in children] in ([None, None], ["Z", "Z"])  # ended (init reaps its orphans)
    assert group_members(leader.pid) in ([], children)


def test_exits_are_described_by_signal_name_or_code():
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(-11) == "was killed by SIGSEGV"
    assert describe_exit(1) == "exited with code 1"
