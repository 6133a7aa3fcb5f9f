"""Run one external tool command (a TensorRT-LLM script) with its output in a log file.

A failure names the command and shows the tail of its log, so the user sees the tool's own error.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from trtpipe.errors import StageError, tail


def run_logged(argv: list[str], log_path: Path, *, stage: str, cwd: str | None = None,
               env: dict[str, str] | None = None) -> None:
    with open(log_path, "w") as log:
        proc = subprocess.run(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=log,
                              stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise StageError(f"failed to run: {' '.join(argv)}, exited with {proc.returncode}\n"
                         f"--- last lines of {log_path} ---\n{tail(log_path.read_text(errors='replace'))}",
                         where=stage, fix="read the tool's error above; the live model repository was not touched")
