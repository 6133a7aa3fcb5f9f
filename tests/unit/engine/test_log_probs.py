"""Top log-probs per generated token and prompt log-probs (echo) from the reference engine."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.engine import EngineRequest, SamplingParams

from .test_grammar import PROMPT, guided
from .tiny import greedy, run_to_completion, tokens_of


def test_top_log_probs_are_the_k_most_likely_and_include_a_greedy_token(synthetic_engine, grammars):
    from trtpipe.engine.sampling import log_softmax, top_log_probs

    row = np.array([0.5, 3.0, -1.0, 3.0, 2.0])
    ids, lps = top_log_probs(log_softmax(row), 3)
    assert ids == [1, 3, 4] and lps == pytest.approx(log_softmax(row)[[1, 3, 4]].tolist())
    outs = run_to_completion(synthetic_engine, [
        EngineRequest("g", PROMPT, 6, sampling=greedy(), return_log_probs=True, num_top_log_probs=4),
        EngineRequest("s", PROMPT, 6, return_log_probs=True, num_top_log_probs=2,
                      sampling=SamplingParams(temperature=0.8, seed=1))])
    for rid, k in (("g", 4), ("s", 2)):
        tokens = tokens_of(outs[rid])
        top = [t for o in outs[rid] for t in o.new_top_log_probs]
        lps = [lp for o in outs[rid] for lp in o.new_log_probs]
        assert len(top) == len(tokens) and all(len(ids) == k for ids, _ in top)
        assert all(v == sorted(v, reverse=True) for _, v in top)
        for token, lp, (ids, values) in zip(tokens, lps, top):
            assert token not in ids or values[ids.index(token)] == pytest.approx(lp)
    assert all(ids[0] == t for t, (ids, _) in zip(tokens_of(outs["g"]), [t for o in outs["g"]
                                                                        for t in o.new_top_log_probs]))


def test_top_log_probs_of_a_guided_request_are_only_tokens_the_grammar_allows(synthetic_engine, grammars,
                                                                             synthetic_tokenizer):
    req = guided("a", grammars, "regex", "[0-9]{3}", num_top_log_probs=5, return_log_probs=True)
    outs = run_to_completion(synthetic_engine, [req])["a"]
    top = [t for o in outs for t in o.new_top_log_probs]
    for ids, values in top:
        allowed = [i for i, v in zip(ids, values) if v > -np.inf]
        assert allowed and all(synthetic_tokenizer.decode([i]).isdigit() for i in allowed)


def test_prompt_log_probs_score_the_prompt_as_generation_scored_the_same_tokens(synthetic_engine):
    gen = run_to_completion(synthetic_engine, [EngineRequest("g", PROMPT, 8, sampling=greedy(),
                                                             return_log_probs=True)])["g"]
    tokens, lps = tokens_of(gen), [lp for o in gen for lp in o.new_log_probs]
    scored = run_to_completion(synthetic_engine, [EngineRequest("s", PROMPT + tokens, 1, sampling=greedy(),
                                                                return_prompt_log_probs=True,
                                                                num_top_log_probs=3)])["s"]
    [first] = [o for o in scored if o.prompt_log_probs is not None]
    assert first is scored[0]  # once, with the first output
    prompt_lps, prompt_top = first.prompt_log_probs
    assert len(prompt_lps) == len(PROMPT) + len(tokens) - 1 and len(prompt_top) == len(prompt_lps)
    assert prompt_lps[-len(tokens):] == pytest.approx(lps, abs=1e-4)
    assert all(ids[0] == t for (ids, _), t in zip(prompt_top[-len(tokens):], tokens))  # greedy = the argmax
