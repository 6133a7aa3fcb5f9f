"""Which published versions a model keeps: the live one and those most recently live before it.

`--keep N` (default DEFAULT_KEEP) keeps N versions: the live version, then versions in the order a rollback
would return to them (repo/history.py), then the newest others. Everything else is retired, with the
versions of its companion models, so `trtpipe cache gc` can delete the artifacts only they were built from.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trtpipe.errors import ConfigError
from trtpipe.repo import layout
from trtpipe.repo.history import recently_live

DEFAULT_KEEP = 3


def check_keep(keep: int) -> int:
    if keep < 1:
        raise ConfigError(f"--keep {keep} would retire the live version", where="--keep",
                          fix="keep at least 1 version (the live one); the default is 3")
    return keep


def versions_to_keep(model_dir: Path, keep: int) -> list[int]:
    available = layout.versions(model_dir)
    kept = [v for v in recently_live(model_dir, layout.live_version(model_dir)) if v in available][:keep]
    for version in reversed(available):
        if len(kept) >= keep:
            break
        if version not in kept:
            kept.append(version)
    return sorted(kept)


def prune(model_dir: Path, keep: int, companions: list[str] = ()) -> list[int]:
    """Retire every version of `model_dir` (and the same versions of its companion models) beyond `keep`;
    the caller holds the repository's publish lock. Returns the retired versions."""
    kept = set(versions_to_keep(model_dir, check_keep(keep)))
    retired = [v for v in layout.versions(model_dir) if v not in kept]
    for version in retired:
        shutil.rmtree(model_dir / str(version), ignore_errors=True)
    for name in companions:
        for version in layout.versions(model_dir.parent / name):
            if version not in kept:
                shutil.rmtree(model_dir.parent / name / str(version), ignore_errors=True)
    return retired
