from trtpipe.engine.scheduler import Scheduler, SeqResult, StepResult
from trtpipe.engine.sequence import SequenceStatus

from .tiny import limits, make_kv, make_sequence


def create_scheduler(num_blocks=64, policy="guaranteed_no_evict", **kw):
    lim = limits(batch_scheduler_policy=policy, max_tokens_in_paged_kv_cache=num_blocks * 4, **kw)
    return Scheduler(lim, make_kv(num_blocks, block_size=4))


def sample_all(sched, plan, token=7):
    """Close the loop as the engine would, with every sampling sequence emitting `token`."""
    result = StepResult({sid: SeqResult([token] * (n if sid in plan.seq_ids_to_verify else 1), None,
                                        num_draft_tokens=n - 1, num_accepted_draft_tokens=n - 1)
                         for sid, n in plan.num_logits.items()})
    return sched.update(plan, result)


def test_token_budget_splits_a_prompt_into_chunks():
    sched = create_scheduler(max_num_tokens=10)
    a, b = make_sequence(0, [1] * 8), make_sequence(1, [2] * 8)
    sched.add(a)
    sched.add(b)
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 8, 1: 2}
    assert plan.num_logits == {0: 1}  # b's first chunk produces no token
    assert plan.new_block_ids == {0: [0, 1], 1: [2]}
    sample_all(sched, plan)
    assert (a.num_computed_tokens, b.num_computed_tokens) == (8, 2)
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 1, 1: 6}  # decode token first (oldest), then b's rest
    assert plan.num_logits == {0: 1, 1: 1}


def test_without_chunked_context_a_prompt_waits_for_a_whole_budget():
    sched = create_scheduler(max_num_tokens=10, enable_chunked_context=False)
    sched.add(make_sequence(0, [1] * 8))
    sched.add(make_sequence(1, [2] * 8))
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 8}
    assert [s.seq_id for s in sched.waiting] == [1]


def test_admission_is_fcfs_and_bounded_by_max_batch_size():
    sched = create_scheduler(max_batch_size=2)
    for i in range(3):
        sched.add(make_sequence(i, [i + 1] * 3))
    plan = sched.schedule()
    assert list(plan.num_scheduled_tokens) == [0, 1]
    assert [s.seq_id for s in sched.waiting] == [2]


def test_guaranteed_no_evict_admits_only_with_blocks_for_the_whole_request():
    sched = create_scheduler(num_blocks=6)
    a = make_sequence(0, [1] * 4, max_new_tokens=12)  # 16 tokens -> 4 blocks reserved
    b = make_sequence(1, [2] * 4, max_new_tokens=8)  # 12 tokens -> 3 blocks: 4 + 3 > 6
    sched.add(a)
    sched.add(b)
    plan = sched.schedule()
    assert list(plan.num_scheduled_tokens) == [0] and b.status == SequenceStatus.WAITING
    steps = 0
    while not a.is_finished:
        assert b.status == SequenceStatus.WAITING
        sample_all(sched, plan)
        plan = sched.schedule()
        steps += 1
    assert steps == 12 and list(plan.num_scheduled_tokens) == [1]


def test_max_utilization_admits_when_the_prompt_fits():
    sched = create_scheduler(num_blocks=6, policy="max_utilization")
    sched.add(make_sequence(0, [1] * 4, max_new_tokens=12))
    sched.add(make_sequence(1, [2] * 4, max_new_tokens=8))
    assert list(sched.schedule().num_scheduled_tokens) == [0, 1]


def test_max_utilization_preempts_the_newest_by_recompute_when_blocks_run_out():
    sched = create_scheduler(num_blocks=4, policy="max_utilization")
    a = make_sequence(0, [1] * 4, max_new_tokens=8)
    b = make_sequence(1, [2] * 4, max_new_tokens=8)
    sched.add(a)
    sched.add(b)
    sample_all(sched, sched.schedule())  # both prefilled: 1 block each, 5 tokens each
    sample_all(sched, sched.schedule())  # both decode into a second block: 4 blocks used
    assert sched.kv.num_free_blocks == 0
    for _ in range(3):
        sample_all(sched, sched.schedule())  # positions 6..8 fit in the second blocks
    plan = sched.schedule()  # a needs a third block: b (newest) goes
    assert plan.preempted_seq_ids == [1] and list(plan.num_scheduled_tokens) == [0]
    assert b.status == SequenceStatus.PREEMPTED and b.block_table == [] and b.num_computed_tokens == 0
    assert list(sched.waiting) == [b] and b.num_tokens == 9  # keeps its output for recompute
    sample_all(sched, plan)
    while not a.is_finished:
        sample_all(sched, sched.schedule())
    plan = sched.schedule()  # b comes back, recomputing prompt + output (minus its cached prefix)
    assert plan.num_scheduled_tokens[1] + b.num_computed_tokens == 9
    # b's blocks were freed tail first, so a's third block evicted b's second; its first survived.
    assert b.num_computed_tokens == 4


def test_prefix_hit_pre_advances_num_computed_tokens():
    sched = create_scheduler()
    a = make_sequence(0, list(range(10)))
    sched.add(a)
    sample_all(sched, sched.schedule())
    b = make_sequence(1, list(range(9)) + [42])
    sched.add(b)
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 1, 1: 2} and b.num_computed_tokens == 8
    assert b.num_cached_tokens == 8 and b.block_table[:2] == a.block_table[:2]


def test_draft_tokens_are_extra_tokens_and_are_never_split_from_the_last_token():
    sched = create_scheduler(max_num_tokens=6)
    seq = make_sequence(0, [1] * 7, max_new_tokens=4, draft_token_ids=[5, 6, 7])
    sched.add(seq)
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 6} and plan.num_logits == {}  # 7 + 3 > 6: prompt[:6] only
    sample_all(sched, plan)
    plan = sched.schedule()
    assert plan.num_scheduled_tokens == {0: 4} and plan.num_logits == {0: 4}
    assert plan.seq_ids_to_verify == [0]
    [update] = sample_all(sched, plan)
    assert update.new_token_ids == [7, 7, 7, 7] and seq.is_finished
