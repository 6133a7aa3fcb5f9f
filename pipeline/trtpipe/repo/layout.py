"""Paths and version numbers inside a Triton model repository; which version is live.

    <repo>/<model>-engine/config.pbtxt      version_policy { specific { versions: [LIVE] } }
    <repo>/<model>-engine/<N>/model.py      the Triton adapter (reference backend)
    <repo>/<model>-engine/<N>/engine/       the engine directory
    <repo>/<model>-engine/<N>/tokenizer/    tokenizer.json, tokenizer_config.json, generation_config.json
    <repo>/<model>-engine/<N>/spec.json     ServingSpec: the limits all layers read
    <repo>/<model>-engine/<N>/manifest.json the build manifest

Triton ignores sub-directories whose names are not integers, so a version is staged as `.staging-N`
inside the model directory and renamed to `N` only when complete.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from trtpipe.cache import trtpipe_home
# The engine model's directory is named by spec.py's builder; re-exported for the callers that ask the layout.
from trtpipe.spec import ENGINE_SUFFIX, engine_model_name  # noqa: F401


def default_repository() -> Path:
    return trtpipe_home() / "model_repository"


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def live_version(model_dir: Path) -> int | None:
    """The version config.pbtxt pins; None when the model has never been published."""
    from trtpipe.repo.model_config import parse_pbtxt

    cfg_path = model_dir / "config.pbtxt"
    if not cfg_path.is_file():
        return None
    policy = parse_pbtxt(cfg_path.read_text()).version_policy
    if policy.WhichOneof("policy_choice") == "specific" and policy.specific.versions:
        return max(policy.specific.versions)
    found = versions(model_dir)
    return found[-1] if found else None


def published_models(repo: Path) -> list[str]:
    """Model names (without the -engine suffix) that have a live version."""
    if not repo.is_dir():
        return []
    return sorted(p.name[: -len(ENGINE_SUFFIX)] for p in repo.iterdir()
                  if p.name.endswith(ENGINE_SUFFIX) and live_version(p) is not None)


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def writer_lock(repo: Path, model: str) -> FileLock:
    """Held for a whole build of `model`: one writer per model; other models build in parallel. A file in the
    repository root, which Triton ignores (it only loads directories)."""
    repo.mkdir(parents=True, exist_ok=True)
    return FileLock(str(repo / f".trtpipe-build-{model}.lock"))
