"""A stage is a pure step (config, inputs) -> artifact whose cache key is decided before it runs."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trtpipe.cache import Artifact, sha256_file
from trtpipe.config import BuildConfig

Inputs = dict[str, Artifact]


@dataclass(frozen=True)
class Stage:
    """`key_inputs` lists everything that determines the output; `run` writes it into out_dir.

    Bump `version` whenever the code of `run` changes what it writes: old cache entries then miss.
    A stage whose `run` is None passes its single input through unchanged (e.g. no quantization).
    """

    name: str
    version: int
    key_inputs: Callable[[BuildConfig, Inputs], dict[str, Any]]
    run: Callable[[BuildConfig, Inputs, Path], dict[str, Any]] | None


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under a directory, by relative path (the artifact metadata file excluded)."""
    return {str(p.relative_to(directory)): sha256_file(p)
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != "artifact.json"}


def link_or_copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = ("artifact.json",)) -> None:
    """Hard-link files when the filesystem allows (artifacts are immutable once written), else copy."""
    for p in sorted(src.rglob("*")):
        if p.name in skip or p.is_dir():
            continue
        target = dst / p.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(p, target)
        except OSError:
            shutil.copy2(p, target)
