"""A stage is a pure step (config, inputs) -> artifact whose cache key is decided before it runs."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trtpipe.cache import RECORD_FILES, Artifact
from trtpipe.integrity import hash_tree
from trtpipe.config import BuildConfig
from trtpipe.stages.steps import Step, run_steps

Inputs = dict[str, Artifact]


def _never(config: BuildConfig) -> str | None:
    return None


@dataclass(frozen=True)
class Stage:
    """`key_inputs` lists everything that determines the output; `plan` lists the steps that write it into
    an output directory (the build runs them, the dry run prints them).

    Bump `version` whenever a recipe changes what it writes: old cache entries then miss.
    `passthrough(config)` gives the reason a stage has nothing to do for a config (e.g. no quantization), or
    None; the next stage then reads the previous artifact under this stage's name.
    """

    name: str
    version: int
    key_inputs: Callable[[BuildConfig, Inputs], dict[str, Any]]
    plan: Callable[[BuildConfig, Inputs, Path], list[Step]]
    passthrough: Callable[[BuildConfig], str | None] = _never

    def run(self, config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
        return run_steps(self.plan(config, inputs, out_dir))


def file_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file under a directory, by relative path (a cache entry's own records excluded)."""
    return hash_tree(directory, RECORD_FILES)


def link_or_copy_tree(src: Path, dst: Path, skip: tuple[str, ...] = RECORD_FILES) -> None:
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
