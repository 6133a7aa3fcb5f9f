"""`trtpipe build CONFIG --dry-run`: every command and file a build would run or write, running nothing."""

from __future__ import annotations

from pathlib import Path

from trtpipe.config import BuildConfig


def describe_build(config: BuildConfig, repo: Path) -> str:
    raise NotImplementedError("dry-run is being written (issue 5)")
