import numpy as np

from trtpipe.engine import EngineRequest, SamplingParams
from trtpipe.engine.speculative import AcceptCounts, verify

from .tiny import greedy, run_to_completion, tokens_of

PROMPT = np.random.default_rng(3).integers(0, 128, 19).tolist()


def plain_greedy(make_engine, prompt, n):
    return tokens_of(run_to_completion(make_engine(), [EngineRequest("g", prompt, n, sampling=greedy())])["g"])


def run_verify(engine, rid, prompt, drafts, **kw):
    kw.setdefault("sampling", greedy())
    outs = run_to_completion(engine, [EngineRequest(rid, prompt, len(drafts) + 1, draft_token_ids=drafts, **kw)])[rid]
    assert len(outs) == 1 and outs[0].finished  # one verify call, one output
    return outs[0]


# -- verify() as a pure function ------------------------------------------------------------------

def test_greedy_verify_accepts_the_matching_prefix_and_returns_the_target_token():
    target = np.eye(5)[[1, 2, 3, 4]]  # argmax per row: 1, 2, 3, then bonus 4
    assert verify([1, 2, 3], target, None, None) == (3, 4)
    assert verify([1, 0, 3], target, None, None) == (1, 2)
    assert verify([0, 2, 3], target, None, None) == (0, 1)


def test_sampled_verify_accepts_everything_when_draft_equals_target():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(6), size=4)
    for _ in range(50):
        drafts = [int(rng.integers(6)) for _ in range(3)]
        n, _ = verify(drafts, p, p[:3], rng)
        assert n == 3


def test_sampled_verify_emits_exactly_the_target_distribution():
    """Speculative sampling's guarantee: the first emitted token ~ p_target, whatever the draft."""
    rng = np.random.default_rng(1)
    p_target = np.array([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]])
    p_draft = np.array([[0.1, 0.2, 0.3, 0.4]])
    for draft_probs in (p_draft, None):  # None: a deterministic draft, q one-hot on its token
        counts = np.zeros(4)
        for _ in range(8000):
            d = int(rng.choice(4, p=p_draft[0]))
            n, bonus = verify([d], p_target, draft_probs, rng)
            counts[d if n == 1 else bonus] += 1
        assert np.abs(counts / counts.sum() - p_target[0]).max() < 0.025


def test_accept_counts_histogram_gives_tokens_per_target_step():
    c = AcceptCounts()
    for n in (3, 3, 0, 1):
        c.record(n)
    assert c.counts == [1, 1, 0, 2] and c.num_verify_calls == 4
    assert c.tokens_per_target_step == (4 + 4 + 1 + 2) / 4


# -- the engine with external drafts --------------------------------------------------------------

def test_draft_equal_to_target_is_fully_accepted_with_identical_text(make_engine):
    k = 5
    expected = plain_greedy(make_engine, PROMPT, k + 1)
    engine = make_engine()
    out = run_verify(engine, "v", PROMPT, expected[:k])
    assert out.new_token_ids == expected
    assert (out.num_draft_tokens, out.num_accepted_draft_tokens) == (k, k)
    assert out.finish_reason == "length"
    assert engine.stats()["accept_counts"] == [0, 0, 0, 0, 0, 1]


def test_wrong_draft_gives_the_same_greedy_text_and_frees_the_rejected_tail(make_engine):
    expected = plain_greedy(make_engine, PROMPT, 6)
    engine = make_engine()
    wrong = [expected[0], (expected[1] + 1) % 128, 5, 6, 7]
    out = run_verify(engine, "v", PROMPT, wrong)
    assert out.new_token_ids == expected[:2]
    assert (out.num_draft_tokens, out.num_accepted_draft_tokens) == (5, 1)
    assert engine.stats()["kv_blocks_used"] == 0


def test_repeated_verify_calls_reproduce_greedy_and_reuse_the_growing_prefix(make_engine):
    """The frontend loop: prompt+history as input, k drafts, max_new_tokens = k + 1."""
    n = 24
    expected = plain_greedy(make_engine, PROMPT, n)
    engine = make_engine()
    rng = np.random.default_rng(0)
    history: list[int] = []
    reused = []
    calls = 0
    while len(history) < n:
        # A draft that is right for a random number of tokens, then wrong.
        good = int(rng.integers(0, 4))
        drafts = expected[len(history):len(history) + good] + [int(t) for t in rng.integers(0, 128, 4 - good)]
        out = run_verify(engine, f"v{calls}", PROMPT + history, drafts)
        history += out.new_token_ids
        reused.append(out.num_reused_prompt_tokens)
        calls += 1
    assert history[:n] == expected
    assert calls < n and all(r > 0 for r in reused[1:])
    assert sum(engine.stats()["accept_counts"]) == calls


def test_seeded_sampled_verification_is_identical_alone_and_batched(make_engine):
    params = SamplingParams(temperature=0.8, seed=11)
    drafts = plain_greedy(make_engine, PROMPT, 4)
    logits = np.random.default_rng(2).standard_normal((4, 128))
    alone = run_verify(make_engine(), "v", PROMPT, drafts, sampling=params, draft_logits=logits).new_token_ids
    engine = make_engine()
    others = [EngineRequest(f"o{i}", PROMPT[: 5 + i], 8, sampling=SamplingParams(seed=i)) for i in range(5)]
    target = EngineRequest("v", PROMPT, 5, draft_token_ids=drafts, draft_logits=logits, sampling=params)
    outs = run_to_completion(engine, others + [target])
    assert tokens_of(outs["v"]) == alone


def test_draft_request_with_a_prompt_over_the_token_budget_is_chunked_then_verified(make_engine):
    expected = plain_greedy(make_engine, PROMPT, 5)
    engine = make_engine(max_num_tokens=6)  # 19 prompt + 4 drafts: prompt chunks, then 1 + 4 at once
    out = run_verify(engine, "v", PROMPT, expected[:4])
    assert out.new_token_ids == expected and out.num_accepted_draft_tokens == 4


def test_end_id_inside_accepted_drafts_stops_there_and_is_dropped(make_engine):
    expected = plain_greedy(make_engine, PROMPT, 5)
    i = next(j for j in range(1, 4) if expected[j] not in expected[:j])
    out = run_verify(make_engine(), "v", PROMPT, expected[:4], end_id=expected[i])
    assert out.new_token_ids == expected[:i] and out.finish_reason == "stop"
