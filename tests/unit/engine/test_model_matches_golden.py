"""Our logits vs Hugging Face transformers' on committed tiny checkpoints (no torch needed).

Fixtures and their generator: tests/fixtures/make_golden.py. Tolerance: max |ours - golden| must
be <= 1e-4 * max(1, max |golden|), i.e. float32 round-off, far below any real modelling error
(dropping llama3 rope scaling alone moves the llama logits by ~0.9).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from trtpipe.engine import Engine, EngineRequest, SamplingParams, convert_checkpoint
from trtpipe.engine.model import forward_dense
from trtpipe.engine.weights import load_weights

from .tiny import limits

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
FAMILIES = ["llama", "mistral", "qwen2", "smollm"]
RTOL_OF_SCALE = 1e-4


@pytest.fixture(scope="module", params=FAMILIES)
def golden(request, tmp_path_factory):
    src = GOLDEN / request.param
    out = tmp_path_factory.mktemp(request.param)
    convert_checkpoint(src, out)
    meta = json.loads((src / "meta.json").read_text())
    return request.param, out, meta["token_ids"], np.load(src / "logits.npy")


def test_logits_match_transformers(golden):
    family, engine_dir, token_ids, expected = golden
    cfg, weights = load_weights(engine_dir)
    ours = forward_dense(weights, cfg, token_ids)
    max_diff = float(np.abs(ours - expected).max())
    tol = RTOL_OF_SCALE * max(1.0, float(np.abs(expected).max()))
    print(f"{family}: max |logit diff| = {max_diff:.3e} (tolerance {tol:.1e})")
    assert max_diff <= tol, f"{family}: max |logit diff| {max_diff:.3e} > {tol:.1e}"


def test_engine_greedy_continuation_follows_golden_argmax(golden):
    """The serving path (paged cache, block size 4, prefill chunks of 5) agrees with transformers."""
    _, engine_dir, token_ids, expected = golden
    engine = Engine.from_dir(engine_dir, limits(max_num_tokens=5, tokens_per_block=4))
    engine.add_request(EngineRequest("g", token_ids[:10], max_new_tokens=1, sampling=SamplingParams(temperature=0),
                                     return_log_probs=True))
    outs = []
    while engine.has_unfinished_requests():
        outs += engine.step()
    [out] = outs
    assert out.new_token_ids == [int(np.argmax(expected[9]))]
    z = expected[9].astype(np.float64)
    log_softmax = z - z.max() - np.log(np.exp(z - z.max()).sum())
    assert out.new_log_probs[0] == pytest.approx(log_softmax[out.new_token_ids[0]], abs=1e-4)
