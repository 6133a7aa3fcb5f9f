"""What verification costs: seconds per GB to hash a published version's files, as publish, rollback and
`trtpipe verify` do (trtpipe.integrity), and the fast path a cache hit takes (size and mtime only).

    python -m bench.verify_cost [--gb 2] [--files 4] [--dir /path/on/the/disk/to/measure]

Writes --files files of random bytes (--gb in all) under --dir (default: a temporary directory), records them
as a cache entry would, then times record (hash every file), a full check and a fast check, each 3 times,
reporting the median. The page cache is warm after the write: this is the CPU cost of sha256 (what a publish
after a build pays); a cold read adds the disk's own read time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from trtpipe.integrity import check_tree, record_tree

CHUNK = 64 << 20


def _write(directory: Path, total_bytes: int, num_files: int) -> None:
    per_file = total_bytes // num_files
    for i in range(num_files):
        with open(directory / f"shard-{i:03d}.bin", "wb") as f:
            for _ in range(per_file // CHUNK):
                f.write(os.urandom(CHUNK))
            f.write(os.urandom(per_file % CHUNK))


def _median_s(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        total = int(args.gb * 1e9)
        _write(directory, total, args.files)
        records = record_tree(directory)
        gb = sum(r["size"] for r in records.values()) / 1e9
        record_s = _median_s(lambda: record_tree(directory))
        full_s = _median_s(lambda: check_tree(directory, records, what="bench", fix=""))
        fast_s = _median_s(lambda: check_tree(directory, records, fast=True, what="bench", fix=""))
    print(f"{gb:.2f} GB in {args.files} files (warm page cache)")
    print(f"record (hash every file):  {record_s:.2f} s = {record_s / gb:.2f} s/GB")
    print(f"full check (publish, rollback, verify): {full_s:.2f} s = {full_s / gb:.2f} s/GB")
    print(f"fast check (cache hit, size+mtime): {fast_s * 1000:.2f} ms")


if __name__ == "__main__":
    main()
