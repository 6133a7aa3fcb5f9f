import numpy as np
import pytest

from trtpipe.engine import SamplingParams
from trtpipe.engine.sampling import apply_penalties, draw, final_probs, greedy_batch, process_row

LOGITS = np.array([2.0, 1.0, 0.5, -1.0, 3.0], dtype=np.float32)


def test_greedy_final_distribution_is_the_plain_softmax():
    p = final_probs(LOGITS, SamplingParams(temperature=0.0, top_k=1, top_p=0.1))  # k/p ignored
    e = np.exp(LOGITS - LOGITS.max())
    assert np.allclose(p, e / e.sum())


def test_top_k_keeps_the_k_largest():
    p = final_probs(LOGITS, SamplingParams(temperature=1.0, top_k=2))
    assert set(np.nonzero(p)[0]) == {0, 4} and p.sum() == pytest.approx(1.0)


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    base = final_probs(LOGITS, SamplingParams())  # sorted: 4 (.61), 0 (.22), 1 (.08), ...
    p = final_probs(LOGITS, SamplingParams(top_p=0.7))
    assert set(np.nonzero(p)[0]) == {4, 0}
    assert p[4] == pytest.approx(base[4] / (base[4] + base[0]))
    assert set(np.nonzero(final_probs(LOGITS, SamplingParams(top_p=0.5)))[0]) == {4}


def test_temperature_sharpens():
    cold = final_probs(LOGITS, SamplingParams(temperature=0.5))
    hot = final_probs(LOGITS, SamplingParams(temperature=2.0))
    assert cold[4] > final_probs(LOGITS, SamplingParams())[4] > hot[4]


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    out = apply_penalties(LOGITS, [0, 3], num_prompt_tokens=2, params=SamplingParams(repetition_penalty=2.0))
    assert out.tolist() == [1.0, 1.0, 0.5, -2.0, 3.0]


def test_presence_and_frequency_penalties_count_output_tokens_only():
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(LOGITS, [4, 4, 1, 1, 1], num_prompt_tokens=2, params=params)  # outputs: 1, 1, 1
    assert out.tolist() == pytest.approx([2.0, 1.0 - 0.5 - 0.75, 0.5, -1.0, 3.0])


def test_min_tokens_masks_end_id_until_reached():
    params = SamplingParams(temperature=0.0, min_tokens=2)
    assert process_row(LOGITS, [9, 9, 9], 2, params, end_id=4)[4] == 0.0  # 1 output so far
    assert process_row(LOGITS, [9, 9, 9, 9], 2, params, end_id=4)[4] > 0.5  # 2 outputs: allowed


def test_draw_consumes_one_uniform_and_follows_the_cdf():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    p = np.array([0.2, 0.0, 0.8])
    tokens = [draw(p, rng_a) for _ in range(2000)]
    assert 1 not in tokens and abs(np.mean(np.array(tokens) == 2) - 0.8) < 0.03
    rng_b.random(2000)
    assert rng_a.random() == rng_b.random()


def test_greedy_batch_returns_argmax_and_log_softmax():
    logits = np.stack([LOGITS, -LOGITS])
    tokens, lps = greedy_batch(logits, want_log_probs=True)
    assert tokens.tolist() == [4, 3]
    z = LOGITS.astype(np.float64)
    assert lps[0] == pytest.approx(z[4] - np.log(np.exp(z).sum()))
