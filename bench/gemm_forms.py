"""The two ways the reference engine can multiply activations by a linear weight, timed on tiny-llama's shapes.

A weight is stored (out, in). `x @ w.T` hands OpenBLAS the weight as the right-hand operand, which sgemm
packs into panels on every call; `(w @ x.T).T` puts the weight on the left and leaves only the small
activation to pack. trtpipe.engine.model.linear switches form at SMALL_BATCH_ROWS rows; this script is the
evidence for that threshold. One decode step = the four decoder linears x 4 layers + lm_head.

    .venv/bin/python -m bench.gemm_forms                 # rows 1..128, prints a table
    .venv/bin/python -m bench.gemm_forms --out bench/results/gemm-forms.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine_load import ForeignLoad, wait_until_quiet

# (in, out) of tiny-llama's linears, and how many of each one decode step runs.
SHAPES = {"qkv": (256, 384, 4), "o": (256, 256, 4), "gate_up": (256, 1536, 4), "down": (768, 256, 4),
          "lm_head": (256, 1024, 1)}
FORMS = {"x @ w.T (weight packed)": lambda x, w: x @ w.T, "(w @ x.T).T (weight on the left)": lambda x, w: (w @ x.T).T}


def time_us(fn, min_s: float = 0.02) -> float:
    fn()
    start = time.perf_counter()
    fn()
    n = max(3, int(min_s / max(time.perf_counter() - start, 1e-7)))
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - start) / n * 1e6)
    return statistics.median(runs)


def step_us(rows: int, form, rng: np.random.Generator) -> float:
    total = 0.0
    for k, n, count in SHAPES.values():
        w = rng.standard_normal((n, k)).astype(np.float32)  # (out, in)
        x = rng.standard_normal((rows, k)).astype(np.float32)  # (rows, in)
        total += count * time_us(lambda: form(x, w))
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 12, 16, 24, 32, 64, 128])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    names = list(FORMS)
    lines = ["| rows | " + " | ".join(f"{n} us/step" for n in names) + " | left / packed | other cores busy |",
             "|---:|" + "---:|" * (len(names) + 2)]
    for rows in args.rows:
        wait_until_quiet()
        with ForeignLoad() as load:
            t = [step_us(rows, FORMS[n], rng) for n in names]
        lines.append(f"| {rows} | " + " | ".join(f"{v:.0f}" for v in t) + f" | {t[1] / t[0]:.2f} | {load.cores:.2f} |")
        print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("# Linear forms on tiny-llama's shapes (`bench/gemm_forms.py`)\n\n"
                            "Hot caches (each shape repeated), so absolute times are lower than inside a step; "
                            "the ratio is what the threshold rests on.\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
