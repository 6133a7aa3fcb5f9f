"""The vocab projection's BLAS forms, timed on the stories15M shape (32000 x 288, float32), by row count.

The weight is 37 MB, past the caches, so every call streams it from memory, as a decode step does. Forms:
`x @ w.T` (the weight packed as the right-hand operand), `x @ w_t` (against an (H, V) copy: a matrix-vector
product reads it as rows), and the weight on the left, `w @ x.T`, whole and in row blocks. What
trtpipe.engine.lm_head.LMHead does at each row count rests on this table.

    .venv/bin/python -m bench.lm_head_forms
    .venv/bin/python -m bench.lm_head_forms --out bench/results/lm-head-forms.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from trtpipe.engine.lm_head import LMHead
from trtpipe.engine.malloc_tuning import keep_freed_memory_for_reuse

from bench.gemm_forms import time_us
from bench.machine_load import ForeignLoad, wait_until_quiet

VOCAB, HIDDEN = 32000, 288


def weight_left_blocks(w: np.ndarray, x: np.ndarray, rows: int) -> np.ndarray:
    out = np.empty((w.shape[0], x.shape[0]), np.float32)
    for s in range(0, w.shape[0], rows):
        np.matmul(w[s:s + rows], x.T, out=out[s:s + rows])
    return out.T


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 2, 4, 8, 16, 24, 32, 64])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    keep_freed_memory_for_reuse()  # as the engine does: no page faults on each call's fresh output
    rng = np.random.default_rng(0)
    w = rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32)  # (V, H)
    head = LMHead(w)
    forms = {"x @ w.T": lambda x: x @ w.T, "x @ w_t": lambda x: x @ head.weight_t,
             "w @ x.T": lambda x: w @ x.T, "w @ x.T, 4096-row blocks": lambda x: weight_left_blocks(w, x, 4096),
             "LMHead": head}
    lines = ["| rows | " + " | ".join(f"{n} (us)" for n in forms) + " | x @ w.T / LMHead | other cores busy |",
             "|---:|" + "---:|" * (len(forms) + 2)]
    print(lines[0], flush=True)
    for rows in args.rows:
        x = rng.standard_normal((rows, HIDDEN)).astype(np.float32)
        wait_until_quiet()
        with ForeignLoad() as load:
            t = [time_us(lambda f=f: f(x), min_s=0.05) for f in forms.values()]
        lines.append(f"| {rows} | " + " | ".join(f"{v:.0f}" for v in t) + f" | {t[0] / t[-1]:.2f} | {load.cores:.2f} |")
        print(lines[-1], flush=True)
    if args.out:
        args.out.write_text("# Vocab projection forms, 32000 x 288 float32 (`bench/lm_head_forms.py`)\n\n"
                            "Median of 5 timed runs per cell; OpenBLAS threads as the environment sets them; glibc malloc "
                            "tuned as the engine tunes it.\n\n"
                            + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
