"""LMHead picks a BLAS form by row count; every form must give the plain product's logits, row-major."""

import numpy as np
import pytest

from trtpipe.engine import lm_head as lm_head_module
from trtpipe.engine.lm_head import BLOCK_ROWS, WEIGHT_LEFT_MAX_ROWS, LMHead

# A vocab that is not a multiple of the block size, so the last weight-left block is a short one.
VOCAB, HIDDEN = 2 * BLOCK_ROWS + 37, 48


@pytest.fixture(scope="module")
def weight():
    return np.random.default_rng(0).standard_normal((VOCAB, HIDDEN)).astype(np.float32)


@pytest.mark.parametrize("rows", [1, 2, WEIGHT_LEFT_MAX_ROWS, WEIGHT_LEFT_MAX_ROWS + 1, 64])
def test_every_row_count_gives_the_plain_products_logits_row_major(weight, rows):
    h = np.random.default_rng(rows).standard_normal((rows, HIDDEN)).astype(np.float32)
    logits = LMHead(weight)(h)
    assert logits.shape == (rows, VOCAB) and logits.dtype == np.float32
    assert logits.flags.c_contiguous
    np.testing.assert_allclose(logits, h.astype(np.float64) @ weight.T.astype(np.float64), rtol=1e-4, atol=1e-4)


def test_a_large_weight_keeps_no_transposed_copy_and_still_projects_one_row(weight, monkeypatch):
    monkeypatch.setattr(lm_head_module, "MAX_TRANSPOSED_COPY_BYTES", weight.nbytes - 1)
    head = LMHead(weight)
    assert head.weight_t is None
    h = np.ones((1, HIDDEN), np.float32)
    np.testing.assert_allclose(head(h), h @ weight.T, rtol=1e-5, atol=1e-4)


def test_a_small_weight_keeps_its_transposed_copy_for_one_row_steps(weight):
    head = LMHead(weight)
    assert head.weight_t.shape == (HIDDEN, VOCAB) and head.weight_t.flags.c_contiguous
    assert head.weight is weight  # the (V, H) weight is not copied: tied heads share the embedding
