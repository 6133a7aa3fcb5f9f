"""LMHead: the vocab projection, the largest matmul of a decode step, in the BLAS form that suits the rows.

The weight (V, H) is tens of MB, past the caches, so each step streams it from memory once; the form decides
how well that stream is used. Measured on the model's shapes (bench/lm_head_forms.py, 2 threads, OpenBLAS,
numbers in bench/results/lm-head-forms.md):
- one row: a matrix-vector product against an (H, V) copy ran faster than against the (V, H)
  weight, whose dot-product form streams it more slowly (2.2x);
- 2 to 24 rows: the weight on the left, (V, H) @ (H, N), in row blocks of a few MB, ran 1.3-1.6x faster than
  x @ w.T, which packs the whole weight as its right-hand operand first, copy back to row-major included;
- more rows (prefill logits, long draft verifications): x @ w.T again.
"""

from __future__ import annotations

import numpy as np

# Up to this many rows the weight goes on the left, in row blocks; above it x @ w.T wins again.
WEIGHT_LEFT_MAX_ROWS = 24
# Rows of the weight per block of the weight-left form: ~4.5 MB at H=288, which held up from 2 to 24 rows.
BLOCK_ROWS = 4096
# The one-row form needs the weight a second time, transposed. Keep that copy only while it is small next to
# the host's memory: at 8B-model sizes (128k x 4096, 2 GB in float32) the second copy is not worth its memory.
MAX_TRANSPOSED_COPY_BYTES = 256 << 20


class LMHead:
    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight  # (V, H) float32, C-contiguous; the embedding itself when tied
        self.weight_t = (np.ascontiguousarray(weight.T) if weight.nbytes <= MAX_TRANSPOSED_COPY_BYTES
                         else None)  # (H, V)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """h (N, H) -> logits (N, V), C-contiguous (the samplers read them row by row)."""
        n = h.shape[0]
        if n == 1 and self.weight_t is not None:
            return h @ self.weight_t
        if n <= WEIGHT_LEFT_MAX_ROWS:
            return self._weight_left(h)
        return h @ self.weight.T

    def _weight_left(self, h: np.ndarray) -> np.ndarray:
        w, v = self.weight, self.weight.shape[0]
        out = np.empty((v, h.shape[0]), dtype=np.float32)  # (V, N)
        h_t = h.T  # (H, N)
        for start in range(0, v, BLOCK_ROWS):
            np.matmul(w[start:start + BLOCK_ROWS], h_t, out=out[start:start + BLOCK_ROWS])
        return np.ascontiguousarray(out.T)  # (N, V)
