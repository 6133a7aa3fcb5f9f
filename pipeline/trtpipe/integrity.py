"""The sha256 of every file a directory holds, recorded when it is written and checked when it is used.

Cache entries (cache.py) and published versions (repo/versions.py) both carry such a record. A check either
hashes every file (publish, rollback, `trtpipe verify`) or, for a cache entry being reused, trusts a file
whose size and mtime are exactly what was recorded (the fast path: a write that changes the bytes changes
the mtime unless it is deliberately put back). Either way a missing file, an unrecorded file and a changed
file are all mismatches, and the message names the first of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from trtpipe.errors import IntegrityError

CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_BYTES), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_files(directory: Path, skip: Iterable[str] = ()) -> list[str]:
    """Relative paths of the files under `directory`, sorted; the relative paths in `skip` left out, and
    Python's own bytecode caches (`__pycache__/`, which Triton's Python backend writes beside model.py)."""
    skipped = set(skip)
    files = (p.relative_to(directory) for p in directory.rglob("*") if p.is_file())
    return sorted(str(rel) for rel in files if str(rel) not in skipped and "__pycache__" not in rel.parts)


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    size: int
    mtime_ns: int

    def to_dict(self) -> dict:
        return {"sha256": self.sha256, "size": self.size, "mtime_ns": self.mtime_ns}


def record_tree(directory: Path, skip: Iterable[str] = (), known: Mapping[str, str] | None = None,
                linked: Mapping[tuple[int, int], str] | None = None) -> dict[str, dict]:
    """{relative path: {sha256, size, mtime_ns}} for every file.

    `known`: sha256s the caller computed from these very bytes a moment ago (e.g. fetch's verified download).
    `linked`: (st_dev, st_ino) -> the sha256 recorded for that file where it was first written: a file
    hard-linked from another cache entry inherits that record instead of being hashed again, so a file that
    was damaged in its first entry stays detectably damaged in every entry that links it."""
    known, linked = known or {}, linked or {}
    out = {}
    for rel in tree_files(directory, skip):
        st = (directory / rel).stat()
        digest = known.get(rel) if isinstance(known.get(rel), str) else linked.get((st.st_dev, st.st_ino))
        out[rel] = FileRecord(digest or sha256_file(directory / rel), st.st_size, st.st_mtime_ns).to_dict()
    return out


def linked_records(directory: Path, records: Mapping[str, Mapping]) -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) -> recorded sha256 for the files of `directory` (see record_tree's `linked`)."""
    out = {}
    for rel, record in records.items():
        try:
            st = (directory / rel).stat()
        except OSError:
            continue
        out[(st.st_dev, st.st_ino)] = record["sha256"]
    return out


def hash_tree(directory: Path, skip: Iterable[str] = ()) -> dict[str, str]:
    """{relative path: sha256} for every file."""
    return {rel: sha256_file(directory / rel) for rel in tree_files(directory, skip)}


def _expected_sha(value: str | Mapping) -> str:
    return value if isinstance(value, str) else value["sha256"]


def _unchanged_stat(path: Path, value: str | Mapping) -> bool:
    if isinstance(value, str) or "size" not in value:
        return False
    st = path.stat()
    return st.st_size == value["size"] and st.st_mtime_ns == value.get("mtime_ns")


def mismatches(directory: Path, expected: Mapping[str, str | Mapping], skip: Iterable[str] = (), *,
               fast: bool = False) -> list[tuple[str, str]]:
    """[(relative path, what is wrong)] for every file that does not match `expected` (sha256 strings or
    FileRecord dicts). `fast`: a file with its recorded size and mtime is taken as unchanged."""
    found = set(tree_files(directory, skip)) if directory.is_dir() else set()
    problems = [(rel, "is missing") for rel in sorted(set(expected) - found)]
    problems += [(rel, "was not recorded (an unexpected file)") for rel in sorted(found - set(expected))]
    for rel in sorted(found & set(expected)):
        value, path = expected[rel], directory / rel
        if fast and _unchanged_stat(path, value):
            continue
        actual = sha256_file(path)
        if actual != _expected_sha(value):
            problems.append((rel, f"has sha256 {actual[:16]}…, recorded {_expected_sha(value)[:16]}…"))
    return sorted(problems)


def check_tree(directory: Path, expected: Mapping[str, str | Mapping], skip: Iterable[str] = (), *,
               fast: bool = False, what: str, fix: str) -> None:
    """Raise IntegrityError naming the first mismatching file of `directory` (and how many there are)."""
    problems = mismatches(directory, expected, skip, fast=fast)
    if problems:
        rel, why = problems[0]
        more = f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""
        raise IntegrityError(f"{what}: {rel} {why}{more}", where=str(directory / rel), fix=fix, path=rel)
