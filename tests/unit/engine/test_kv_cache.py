import pytest

from trtpipe.engine import EngineLimits
from trtpipe.engine.kv_cache import num_kv_blocks

from .tiny import make_kv, make_sequence, tiny_config


def compute(kv, seq, n):
    """What the scheduler and update do for n tokens: allocate, advance, publish."""
    assert kv.allocate_slots(seq, n) is not None
    seq.num_computed_tokens += n
    kv.append(seq)


def test_prefix_hit_reuses_blocks_and_bumps_ref_cnt():
    kv = make_kv(num_blocks=8)
    a = make_sequence(0, list(range(10)))  # 2 full blocks + 2 tokens
    compute(kv, a, 10)
    assert a.block_table == [0, 1, 2]
    b = make_sequence(1, list(range(8)) + [50, 51, 52])
    blocks, num_tokens = kv.get_computed_blocks(b)
    assert (blocks, num_tokens) == ([0, 1], 8)
    assert kv.allocate_slots(b, 3, blocks) == [3]
    assert b.block_table == [0, 1, 3]
    assert [kv.pool.blocks[i].ref_cnt for i in (0, 1, 2, 3)] == [2, 2, 1, 1]
    assert kv.pool.num_reused_blocks_total == 2


def test_prefix_lookup_always_leaves_the_last_token_to_compute():
    kv = make_kv(num_blocks=8)
    a = make_sequence(0, list(range(8)))
    compute(kv, a, 8)
    b = make_sequence(1, list(range(8)))  # identical, exactly two blocks
    assert kv.get_computed_blocks(b) == ([0], 4)


def test_partial_blocks_are_never_published():
    kv = make_kv(num_blocks=8)
    a = make_sequence(0, list(range(6)))
    compute(kv, a, 6)
    kv.free(a)
    b = make_sequence(1, list(range(6)) + [99])
    assert kv.get_computed_blocks(b) == ([0], 4)


def test_freed_sequence_blocks_stay_cached_until_evicted_tail_first():
    kv = make_kv(num_blocks=4)
    a = make_sequence(0, list(range(12)))
    compute(kv, a, 12)
    kv.free(a)
    assert kv.pool.free_block_ids() == [3, 2, 1, 0]  # unused block 3 first, then a's tail first
    b = make_sequence(1, [100] * 8)
    compute(kv, b, 8)  # takes 3 and 2: a's last block is evicted, its first two survive
    c = make_sequence(2, list(range(12)))
    assert kv.get_computed_blocks(c) == ([0, 1], 8)


def test_allocate_slots_returns_none_and_changes_nothing_when_short():
    kv = make_kv(num_blocks=3)
    a = make_sequence(0, list(range(8)))
    compute(kv, a, 8)
    kv.free(a)
    b = make_sequence(1, list(range(8)) + list(range(50, 60)))
    blocks, n = kv.get_computed_blocks(b)
    assert blocks == [0, 1]
    before = (kv.pool.free_block_ids(), [x.ref_cnt for x in kv.pool.blocks])
    assert kv.allocate_slots(b, 10, blocks) is None  # needs 3 more blocks, only 1 left after the hit
    assert (kv.pool.free_block_ids(), [x.ref_cnt for x in kv.pool.blocks]) == before
    assert b.block_table == []


def test_truncate_frees_only_the_tail_blocks():
    kv = make_kv(num_blocks=8)
    a = make_sequence(0, list(range(5)))
    compute(kv, a, 5)
    assert kv.allocate_slots(a, 6) == [2]  # 11 slots: drafts being verified
    kv.truncate(a, 7)
    assert a.block_table == [0, 1] and kv.pool.num_used_blocks == 2
    kv.pool.check_invariants(full=True)


def test_disabled_reuse_never_hits():
    kv = make_kv(num_blocks=8, caching=False)
    a = make_sequence(0, list(range(10)))
    compute(kv, a, 10)
    assert kv.get_computed_blocks(make_sequence(1, list(range(10)))) == ([], 0)


def test_kv_capacity_from_explicit_tokens_and_refusal_when_too_small():
    cfg = tiny_config()
    assert num_kv_blocks(cfg, EngineLimits(max_tokens_in_paged_kv_cache=4096, tokens_per_block=32)) == 128
    with pytest.raises(ValueError, match="max_seq_len"):
        num_kv_blocks(cfg, EngineLimits(max_tokens_in_paged_kv_cache=64, max_seq_len=2048))


def test_kv_capacity_from_free_memory_is_capped_by_batch_times_seq_len():
    lim = EngineLimits(max_batch_size=2, max_seq_len=256, tokens_per_block=32)
    assert num_kv_blocks(tiny_config(), lim) == 2 * 256 // 32
