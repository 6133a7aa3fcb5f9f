"""Prefix-cache hits are exact: a colliding block hash costs a miss, never another prompt's K/V; and the
engine counts queries and hits in tokens, as vLLM's `prefix_cache_queries` / `prefix_cache_hits` do."""

import numpy as np

from trtpipe.engine import EngineRequest
from trtpipe.engine import kv_cache as kv_cache_module

from .tiny import greedy, run_to_completion, tokens_of

RNG = np.random.default_rng(11)
PROMPT_A = RNG.integers(0, 128, 17).tolist()  # 4 full blocks of 4 can be reused (the last token never is)
PROMPT_B = RNG.integers(0, 128, 17).tolist()


def req(rid, prompt, n=10):
    return EngineRequest(rid, list(prompt), n, sampling=greedy())


def test_every_block_hash_colliding_serves_no_wrong_kv(make_engine, monkeypatch):
    [alone_b] = [tokens_of(run_to_completion(make_engine(), [req("b", PROMPT_B)])["b"])]
    # Every block of every prompt gets the same key: without the token-id check on a hit, B would be served
    # A's first block (and then A's chain) and its greedy tokens would change.
    monkeypatch.setattr(kv_cache_module, "hash_block_tokens", lambda parent, tokens: b"collides")
    engine = make_engine()
    run_to_completion(engine, [req("a", PROMPT_A)])
    b = run_to_completion(engine, [req("b", PROMPT_B)])["b"]
    assert tokens_of(b) == alone_b
    assert b[-1].num_reused_prompt_tokens == 0
    # The stub is in force and hits still work where the tokens match: A's first block is the one published
    # under the shared key, so A again reuses exactly that block.
    again = run_to_completion(engine, [req("a2", PROMPT_A)])["a2"]
    assert again[-1].num_reused_prompt_tokens == 4


def test_a_hit_on_the_same_key_with_other_tokens_would_change_the_output(make_engine):
    # The check above can fail: B computed over A's first block's K/V gives other greedy tokens.
    engine = make_engine()
    run_to_completion(engine, [req("a", PROMPT_A)])
    kv = engine.kv
    [a_block] = [b for b in range(kv.pool.num_blocks) if kv.pool.blocks[b].token_ids == tuple(PROMPT_A[:4])]
    alone_b = tokens_of(run_to_completion(make_engine(), [req("b", PROMPT_B)])["b"])
    orig = kv.get_computed_blocks
    kv.get_computed_blocks = lambda seq: ([a_block], 4) if seq.request_id == "b" else orig(seq)
    wrong = tokens_of(run_to_completion(engine, [req("b", PROMPT_B)])["b"])
    assert wrong != alone_b


def test_prefix_cache_counts_queried_and_hit_tokens_per_admission(make_engine):
    engine = make_engine()
    run_to_completion(engine, [req("a", PROMPT_A)])
    assert (engine.stats()["prefix_cache_queries"], engine.stats()["prefix_cache_hits"]) == (17, 0)
    run_to_completion(engine, [req("a2", PROMPT_A)])
    run_to_completion(engine, [req("b", PROMPT_B)])
    stats = engine.stats()
    assert (stats["prefix_cache_queries"], stats["prefix_cache_hits"]) == (3 * 17, 16)


def test_prefix_cache_counters_stay_zero_with_reuse_disabled(make_engine):
    engine = make_engine(enable_kv_cache_reuse=False)
    run_to_completion(engine, [req("a", PROMPT_A), req("a2", PROMPT_A)])
    assert (engine.stats()["prefix_cache_queries"], engine.stats()["prefix_cache_hits"]) == (0, 0)
