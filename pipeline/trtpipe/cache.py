"""Content-addressed artifact store: $TRTPIPE_HOME/artifacts/<stage>/<key>/.

The key is decided before a stage runs (it hashes everything that determines the output), so a hit is
proven without running anything. Entries are written to a temporary directory and renamed into place,
so a crash never leaves a half-written entry under a real key; an entry without its `artifact.json`
is treated as corrupt, deleted, and rebuilt. A file lock makes a second concurrent build of the same key
wait for the first and then reuse its result.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from filelock import FileLock

ARTIFACT_FILE = "artifact.json"


def trtpipe_home() -> Path:
    return Path(os.environ.get("TRTPIPE_HOME", Path.home() / ".cache" / "trtpipe")).expanduser()


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 of canonical JSON: the same inputs always give the same key, key order does not matter."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    """What a stage hands the next one: where its output lives and what it recorded about it."""

    stage: str
    key: str
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)


class ArtifactCache:
    def __init__(self, root: Path | None = None):
        self.root = (root or trtpipe_home() / "artifacts").expanduser()

    def entry_dir(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def get(self, stage: str, key: str) -> Artifact | None:
        d = self.entry_dir(stage, key)
        meta_file = d / ARTIFACT_FILE
        if not d.exists():
            return None
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            # NOTE: a directory without readable metadata was never completed (or was damaged): rebuild it.
            shutil.rmtree(d, ignore_errors=True)
            return None
        return Artifact(stage, key, d, meta)

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any]]) -> tuple[Artifact, bool]:
        """Return (artifact, was_cached). `build(tmp_dir)` writes the output and returns its metadata."""
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / stage / f"{key}.lock")):
            self._remove_abandoned_tmp(stage)
            hit = self.get(stage, key)
            if hit is not None:
                return hit, True
            tmp = self.root / stage / f".tmp-{key[:16]}-{os.getpid()}-{time.monotonic_ns()}"
            tmp.mkdir()
            try:
                meta = build(tmp)
                (tmp / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
                os.replace(tmp, self.entry_dir(stage, key))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return Artifact(stage, key, self.entry_dir(stage, key), meta), False

    def _remove_abandoned_tmp(self, stage: str) -> None:
        """A build killed mid-stage leaves its .tmp-* directory; the pid in the name says if it is still alive."""
        for tmp in (self.root / stage).glob(".tmp-*"):
            try:
                pid = int(tmp.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if not _pid_alive(pid):
                shutil.rmtree(tmp, ignore_errors=True)

    def entries(self) -> Iterator[Artifact]:
        if not self.root.is_dir():
            return
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            for d in sorted(p for p in stage_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
                art = self.get(stage_dir.name, d.name)
                if art is not None:
                    yield art

    def remove(self, artifact: Artifact) -> None:
        shutil.rmtree(artifact.path, ignore_errors=True)

    def gc(self, keep_keys: set[str]) -> list[Artifact]:
        """Remove every entry whose key is not in keep_keys; returns what was removed."""
        removed = [a for a in self.entries() if a.key not in keep_keys]
        for artifact in removed:
            self.remove(artifact)
        return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
