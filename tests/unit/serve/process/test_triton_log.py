"""Triton's log is never overwritten: one file per `serve` run by default, always opened for appending, each
start marked by a header line (serve.process.launcher)."""

from __future__ import annotations

import re
import time
from pathlib import Path

from trtpipe.serve.process.launcher import TritonServer, open_log, run_log_path


def test_each_run_gets_its_own_log_named_by_start_time_and_serve_pid(tmp_path: Path):
    now = time.mktime((2025, 3, 4, 5, 6, 7, 0, 0, -1))
    assert run_log_path(tmp_path, now, 4242) == tmp_path / "logs" / "tritonserver-20250304-050607-4242.log"
    assert run_log_path(tmp_path, now, 4243) != run_log_path(tmp_path, now, 4242)


def test_a_start_appends_a_header_after_what_the_log_already_holds(tmp_path: Path):
    path = tmp_path / "logs" / "tritonserver.log"
    path.parent.mkdir()
    path.write_text("the previous start's lines\n")
    with open_log(path, "tritonserver start 2 by pid 7 (restart after: it was killed by SIGKILL)") as log:
        log.write("the new start's lines\n")
    lines = path.read_text().splitlines()
    assert lines[0] == "the previous start's lines" and lines[2] == "the new start's lines"
    assert re.fullmatch(r"=== trtpipe \d{4}-\d\d-\d\d \d\d:\d\d:\d\d: tritonserver start 2 by pid 7 \(restart after: "
                        r"it was killed by SIGKILL\) ===", lines[1]), lines[1]


def test_the_server_defaults_to_a_per_run_log(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path))
    log_path = TritonServer(tmp_path / "repo").log_path
    assert log_path.parent == tmp_path / "logs" and re.fullmatch(r"tritonserver-\d{8}-\d{6}-\d+\.log", log_path.name)
