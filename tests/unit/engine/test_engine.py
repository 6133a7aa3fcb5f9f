import numpy as np
import pytest

from trtpipe.engine import EngineRequest, SamplingParams

from .tiny import greedy, run_to_completion, tokens_of

RNG = np.random.default_rng(7)
PROMPTS = [RNG.integers(0, 128, n).tolist() for n in (5, 13, 1, 22, 9, 17, 3, 30, 11, 6, 25, 8)]


def req(rid, prompt, n=12, **kw):
    kw.setdefault("sampling", greedy())
    return EngineRequest(rid, list(prompt), n, **kw)


def solo_outputs(make_engine, prompts, n=12, **kw):
    return [tokens_of(run_to_completion(make_engine(), [req("a", p, n, **kw)])["a"]) for p in prompts]


def first_fresh_index(tokens):
    """An index i >= 2 whose token does not occur before it (so stopping there is unambiguous)."""
    return next(i for i in range(2, len(tokens)) if tokens[i] not in tokens[:i])


def test_greedy_is_identical_alone_and_batched_with_many_others(make_engine):
    alone = solo_outputs(make_engine, PROMPTS)
    outs = run_to_completion(make_engine(), [req(f"r{i}", p) for i, p in enumerate(PROMPTS)])
    assert [tokens_of(outs[f"r{i}"]) for i in range(len(PROMPTS))] == alone


def test_greedy_is_identical_with_chunked_prefill(make_engine):
    alone = solo_outputs(make_engine, PROMPTS[:6])
    engine = make_engine(max_num_tokens=7)  # every prompt over 7 tokens is split into chunks
    outs = run_to_completion(engine, [req(f"r{i}", p) for i, p in enumerate(PROMPTS[:6])])
    assert [tokens_of(outs[f"r{i}"]) for i in range(6)] == alone


def test_greedy_is_identical_with_prefix_reuse(make_engine):
    prompt = PROMPTS[7]  # 30 tokens: 7 full blocks of 4 are reusable
    [alone] = solo_outputs(make_engine, [prompt])
    engine = make_engine()
    first = run_to_completion(engine, [req("a", prompt)])["a"]
    second = run_to_completion(engine, [req("b", prompt)])["b"]
    assert tokens_of(first) == tokens_of(second) == alone
    assert first[-1].num_reused_prompt_tokens == 0
    assert second[-1].num_reused_prompt_tokens == 28
    assert engine.stats()["kv_blocks_reused_total"] == 7


def test_greedy_is_identical_under_preemption_by_recompute(make_engine):
    alone = solo_outputs(make_engine, PROMPTS[:6], n=20)
    engine = make_engine(batch_scheduler_policy="max_utilization", max_seq_len=64,
                         max_tokens_in_paged_kv_cache=96)  # 24 blocks for ~6 * 40 tokens
    preempted = []
    orig = engine.scheduler.schedule

    def spy():
        plan = orig()
        preempted.extend(plan.preempted_seq_ids)
        return plan

    engine.scheduler.schedule = spy
    outs = run_to_completion(engine, [req(f"r{i}", p, 20) for i, p in enumerate(PROMPTS[:6])])
    assert preempted, "the cache was meant to be too small for all six at once"
    assert [tokens_of(outs[f"r{i}"]) for i in range(6)] == alone


def test_guaranteed_no_evict_never_preempts_and_queues_instead(make_engine):
    engine = make_engine(max_seq_len=64, max_tokens_in_paged_kv_cache=96)
    outs = run_to_completion(engine, [req(f"r{i}", p, 20) for i, p in enumerate(PROMPTS[:6])])
    assert all(o[-1].num_output_tokens == 20 for o in outs.values())
    assert engine.stats()["kv_blocks_used"] == 0


def test_seeded_sampling_is_identical_alone_and_batched(make_engine):
    params = [SamplingParams(temperature=0.9, top_k=40, top_p=0.9, seed=100 + i) for i in range(6)]
    alone = [tokens_of(run_to_completion(make_engine(), [req("a", PROMPTS[i], sampling=params[i])])["a"])
             for i in range(6)]
    outs = run_to_completion(make_engine(max_num_tokens=9),
                             [req(f"r{i}", PROMPTS[i], sampling=params[i]) for i in range(6)])
    assert [tokens_of(outs[f"r{i}"]) for i in range(6)] == alone
    other_seed = run_to_completion(make_engine(), [req("x", PROMPTS[0], sampling=SamplingParams(
        temperature=0.9, top_k=40, top_p=0.9, seed=999))])["x"]
    assert tokens_of(other_seed) != alone[0]


def test_streaming_outputs_carry_only_new_tokens_and_finish_once(make_engine):
    outs = run_to_completion(make_engine(max_num_tokens=8), [req("a", PROMPTS[7], n=5)])["a"]
    # 30-token prompt in chunks of 8: the three chunks before the last produce nothing.
    assert [len(o.new_token_ids) for o in outs] == [1] * 5
    assert [o.num_output_tokens for o in outs] == [1, 2, 3, 4, 5]
    assert [o.finished for o in outs] == [False] * 4 + [True]
    assert outs[-1].finish_reason == "length" and outs[-1].num_prompt_tokens == 30


def test_end_id_stops_the_request_and_is_not_returned(make_engine):
    [full] = solo_outputs(make_engine, [PROMPTS[1]], n=16)
    i = first_fresh_index(full)
    outs = run_to_completion(make_engine(), [req("a", PROMPTS[1], 16, end_id=full[i])])["a"]
    assert tokens_of(outs) == full[:i]
    assert outs[-1].finished and outs[-1].finish_reason == "stop" and outs[-1].num_output_tokens == i


def test_min_tokens_suppresses_end_id_until_reached(make_engine):
    [full] = solo_outputs(make_engine, [PROMPTS[1]], n=16)
    i = first_fresh_index(full)
    outs = run_to_completion(make_engine(), [req("a", PROMPTS[1], 16, end_id=full[i],
                                                 sampling=greedy(min_tokens=i + 1))])["a"]
    got = tokens_of(outs)
    assert got[:i] == full[:i] and got[i] != full[i] and len(got) >= i + 1


def test_stop_sequence_is_included_and_ends_the_request(make_engine):
    [full] = solo_outputs(make_engine, [PROMPTS[1]], n=16)
    i = first_fresh_index(full)
    stop = [full[i - 1], full[i]]
    outs = run_to_completion(make_engine(), [req("a", PROMPTS[1], 16, stop_token_ids=[[999], stop])])["a"]
    assert tokens_of(outs) == full[: i + 1] and outs[-1].finish_reason == "stop"


def test_log_probs_are_returned_per_token_when_asked(make_engine):
    outs = run_to_completion(make_engine(), [req("a", PROMPTS[0], 4, return_log_probs=True),
                                             req("b", PROMPTS[1], 4)])
    lps = [lp for o in outs["a"] for lp in o.new_log_probs]
    assert len(lps) == 4 and all(lp <= 0 for lp in lps)
    assert all(o.new_log_probs is None for o in outs["b"])


def test_abort_frees_blocks_at_once_and_returns_a_cancelled_output(make_engine):
    engine = make_engine()
    engine.add_request(req("a", PROMPTS[7], 50))
    engine.add_request(req("b", PROMPTS[3], 50))
    engine.step()
    engine.step()
    used = engine.stats()["kv_blocks_used"]
    out = engine.abort("a")
    assert out.finished and out.finish_reason == "cancelled" and out.new_token_ids == []
    assert out.num_output_tokens == 2
    assert engine.stats()["kv_blocks_used"] == used - 8  # a held 32 slots: 30 prompt + 2 decoded
    assert engine.abort("a") is None and engine.abort("never-seen") is None
    assert engine.stats()["num_active_requests"] == 1
    assert engine.abort("b").finish_reason == "cancelled"
    assert not engine.has_unfinished_requests() and engine.stats()["kv_blocks_used"] == 0


def test_abort_of_a_waiting_request(make_engine):
    engine = make_engine(max_batch_size=1)
    engine.add_request(req("a", PROMPTS[0]))
    engine.add_request(req("b", PROMPTS[1]))
    engine.step()
    assert engine.stats()["num_waiting_requests"] == 1
    assert engine.abort("b").finish_reason == "cancelled"
    assert engine.stats()["num_waiting_requests"] == 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt_token_ids=[]), "`prompt_token_ids` must not be empty"),
    (dict(prompt_token_ids=[1, 128]), r"\[0, 128\). Given: \[128\]"),
    (dict(prompt_token_ids=[1] * 100, max_new_tokens=29), r"max_seq_len=128. Given: 100 \+ 29 = 129"),
    (dict(max_new_tokens=0), "`max_new_tokens` must be >= 1"),
    (dict(sampling=SamplingParams(top_p=0.0)), "`top_p`"),
    (dict(draft_token_ids=[1, 2], draft_logits=np.zeros((2, 5))), r"`draft_logits` must have shape \(2, 128\)"),
])
def test_add_request_rejects_bad_requests_naming_the_parameter(make_engine, kwargs, match):
    base = dict(request_id="a", prompt_token_ids=[1, 2, 3], max_new_tokens=4)
    with pytest.raises(ValueError, match=match):
        make_engine().add_request(EngineRequest(**{**base, **kwargs}))


def test_duplicate_active_request_id_is_rejected(make_engine):
    engine = make_engine()
    engine.add_request(req("a", [1, 2]))
    with pytest.raises(ValueError, match="already active"):
        engine.add_request(req("a", [3]))


def test_stats_report_queue_and_block_counts(make_engine):
    engine = make_engine(max_batch_size=2)
    for i in range(3):
        engine.add_request(req(f"r{i}", PROMPTS[i]))
    engine.step()
    s = engine.stats()
    assert (s["num_active_requests"], s["num_running_requests"], s["num_waiting_requests"]) == (3, 2, 1)
    assert s["kv_blocks_used"] + s["kv_blocks_free"] == s["kv_blocks_total"] == 512
    assert s["tokens_per_block"] == 4 and s["accept_counts"] == []


def test_generate_runs_prompts_to_completion(make_engine):
    engine = make_engine()
    out = engine.generate(PROMPTS[:3], max_new_tokens=5)
    assert [len(o) for o in out] == [5, 5, 5]
    assert out == solo_outputs(make_engine, PROMPTS[:3], n=5)


def test_disabled_kv_cache_reuse_recomputes_the_prompt(make_engine):
    engine = make_engine(enable_kv_cache_reuse=False)
    run_to_completion(engine, [req("a", PROMPTS[7])])
    second = run_to_completion(engine, [req("b", PROMPTS[7])])["b"]
    assert second[-1].num_reused_prompt_tokens == 0 and engine.stats()["kv_blocks_reused_total"] == 0


def test_step_on_an_idle_engine_returns_nothing(make_engine):
    engine = make_engine()
    assert engine.step() == [] and not engine.has_unfinished_requests()


def test_sequences_outgrowing_the_cache_together_are_preempted_and_recomputed_to_the_same_text(make_engine):
    # 3 sequences, a cache of 12 blocks of 4: each alone needs up to 9 blocks.
    engine = make_engine(batch_scheduler_policy="max_utilization", max_seq_len=48, max_tokens_in_paged_kv_cache=48)
    alone = solo_outputs(make_engine, PROMPTS[:3], n=30)
    outs = run_to_completion(engine, [req(f"r{i}", p, 30) for i, p in enumerate(PROMPTS[:3])])
    assert [tokens_of(outs[f"r{i}"]) for i in range(3)] == alone
