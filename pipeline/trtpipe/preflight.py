"""Checks that fail a build before any work: enough free disk for the artifacts it will write."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trtpipe.config import BuildConfig
from trtpipe.errors import StageError

GIB = 1 << 30


def required_free_bytes(config: BuildConfig) -> int:
    """A conservative floor: the checkpoint is stored about three times (download, convert, engine)."""
    floor = float(os.environ.get("TRTPIPE_MIN_FREE_GB", "1")) * GIB
    if config.source.path:
        src = Path(config.source.path).expanduser()
        size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file()) if src.is_dir() else 0
        return int(max(floor, 3 * size))
    return int(floor)


def check_free_space(root: Path, config: BuildConfig) -> None:
    probe = root
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    need = required_free_bytes(config)
    if free < need:
        raise StageError(f"only {free / GIB:.1f} GiB free under {root}, the build needs about {need / GIB:.1f} GiB",
                         where="preflight", fix="free space (trtpipe cache gc removes artifacts no published "
                                                "version uses) or point TRTPIPE_HOME at a larger disk")
