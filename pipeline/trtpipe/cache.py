"""Content-addressed artifact store: $TRTPIPE_HOME/artifacts/<stage>/<key>/.

The key is decided before a stage runs (it hashes everything that determines the output), so a hit is
proven without running anything. Entries are written to a temporary directory and renamed into place,
so a crash never leaves a half-written entry under a real key. Each entry records the sha256, size and
mtime of every file it holds (`contents.json`); a hit is reused only when its files still match (a file
with its recorded size and mtime is trusted: the fast path), otherwise the entry is discarded with a
warning that names the file, and rebuilt. An entry without its `artifact.json` or `contents.json` is
treated the same way. A file lock makes a second concurrent build of the same key wait for the first and
then reuse its result.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from filelock import FileLock

from trtpipe.errors import IntegrityError
from trtpipe.integrity import check_tree, linked_records, record_tree, sha256_file  # noqa: F401 - re-exported

ARTIFACT_FILE = "artifact.json"
CONTENTS_FILE = "contents.json"
RECORD_FILES = (ARTIFACT_FILE, CONTENTS_FILE)  # what an entry says about itself, not part of its output
log = logging.getLogger("trtpipe.cache")


def trtpipe_home() -> Path:
    return Path(os.environ.get("TRTPIPE_HOME", Path.home() / ".cache" / "trtpipe")).expanduser()


def cache_key(payload: dict[str, Any]) -> str:
    """sha256 of canonical JSON: the same inputs always give the same key, key order does not matter."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class CorruptEntryError(IntegrityError):
    """A cache entry about to be used does not match its record and was discarded: building again rebuilds it
    (build() does so once, by itself)."""


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

    def get(self, stage: str, key: str, *, verify: bool = True, fast: bool = True) -> Artifact | None:
        """The entry, or None. `verify`: check its files (`fast`: trusting an unchanged size and mtime) and
        discard the entry when they do not match."""
        d = self.entry_dir(stage, key)
        if not d.exists():
            return None
        try:
            meta = json.loads((d / ARTIFACT_FILE).read_text())
        except (OSError, ValueError):
            # NOTE: a directory without readable metadata was never completed (or was damaged): rebuild it.
            shutil.rmtree(d, ignore_errors=True)
            return None
        artifact = Artifact(stage, key, d, meta)
        if verify:
            try:
                self.verify(artifact, fast=fast)
            except IntegrityError as e:
                log.warning("discarding the %s cache entry %s and building it again: %s", stage, key[:12], e.what)
                self.remove(artifact)
                return None
        return artifact

    def contents(self, artifact: Artifact) -> dict[str, dict]:
        """{relative path: {sha256, size, mtime_ns}} recorded when the entry was written."""
        try:
            return json.loads((artifact.path / CONTENTS_FILE).read_text())["files"]
        except (OSError, ValueError, KeyError):
            raise IntegrityError(f"the {artifact.stage} cache entry {artifact.key[:12]} records no file hashes",
                                 where=str(artifact.path), fix="build again: the entry is rebuilt") from None

    def verify(self, artifact: Artifact, *, fast: bool = False) -> None:
        """Raise IntegrityError unless every file of the entry has its recorded sha256 (`fast`: or its
        recorded size and mtime)."""
        check_tree(artifact.path, self.contents(artifact), RECORD_FILES, fast=fast,
                   what=f"the {artifact.stage} cache entry {artifact.key[:12]} changed after it was written",
                   fix="build again: the entry is discarded and rebuilt (trtpipe build does this itself)")

    def get_or_build(self, stage: str, key: str, build: Callable[[Path], dict[str, Any]], *,
                     fast: bool = True, inputs: Iterable[Artifact] = ()) -> tuple[Artifact, bool]:
        """Return (artifact, was_cached). `build(tmp_dir)` writes the output and returns its metadata. A hit is
        verified first (`fast`: see get). `inputs`: the entries the build reads; a file it hard-links from one
        of them keeps the sha256 recorded there."""
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / stage / f"{key}.lock")):
            self._remove_abandoned_tmp(stage)
            hit = self.get(stage, key, fast=fast)
            if hit is not None:
                return hit, True
            tmp = self.root / stage / f".tmp-{key[:16]}-{os.getpid()}-{time.monotonic_ns()}"
            tmp.mkdir()
            try:
                meta = build(tmp)
                known = meta.get("files") if isinstance(meta.get("files"), dict) else None  # fetch hashed these
                files = record_tree(tmp, RECORD_FILES, known=known, linked=self._linked(inputs))
                (tmp / CONTENTS_FILE).write_text(json.dumps({"files": files}, indent=1, sort_keys=True) + "\n")
                (tmp / ARTIFACT_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
                os.replace(tmp, self.entry_dir(stage, key))
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            return Artifact(stage, key, self.entry_dir(stage, key), meta), False

    def _linked(self, inputs: Iterable[Artifact]) -> dict[tuple[int, int], str]:
        linked: dict[tuple[int, int], str] = {}
        for artifact in inputs:
            try:
                linked.update(linked_records(artifact.path, self.contents(artifact)))
            except IntegrityError:
                continue  # not a cache entry of this store: its files are hashed like any other
        return linked

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
                art = self.get(stage_dir.name, d.name, verify=False)
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
