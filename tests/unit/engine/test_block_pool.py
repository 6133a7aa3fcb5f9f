from trtpipe.engine.block_pool import BlockPool, hash_block_tokens


def test_allocate_hands_out_lowest_ids_first_and_returns_none_when_short():
    pool = BlockPool(4)
    assert pool.allocate(3) == [0, 1, 2]
    assert pool.allocate(2) is None
    assert pool.num_free_blocks == 1 and pool.num_used_blocks == 3
    assert [b.ref_cnt for b in pool.blocks] == [1, 1, 1, 0]


def test_freed_blocks_join_the_tail_so_eviction_is_lru():
    pool = BlockPool(4)
    a = pool.allocate(2)  # [0, 1]
    b = pool.allocate(2)  # [2, 3]
    pool.free(reversed(b))  # tail first: 3 then 2
    pool.free(reversed(a))
    # This block ID order also checks the eviction order.
    assert pool.free_block_ids() == [3, 2, 1, 0]
    assert pool.allocate(3) == [3, 2, 1]


def test_cached_block_is_evicted_only_when_handed_out_again():
    pool = BlockPool(2)
    [b0, b1] = pool.allocate(2)
    h = hash_block_tokens(None, [1, 2, 3, 4])
    assert pool.cache_block(b0, h, [1, 2, 3, 4])
    pool.free([b0, b1])
    assert pool.get_cached_block(h, [1, 2, 3, 4]) == b0  # free but still findable
    assert pool.allocate(1) == [b0]  # LRU head is b0: its hash goes
    assert pool.get_cached_block(h, [1, 2, 3, 4]) is None
    assert pool.num_evicted_blocks_total == 1


def test_touch_shares_a_block_and_pulls_an_idle_one_out_of_the_free_queue():
    pool = BlockPool(3)
    [b0] = pool.allocate(1)
    pool.cache_block(b0, b"7", [7])
    pool.touch([b0])
    assert pool.blocks[b0].ref_cnt == 2
    pool.free([b0])
    pool.free([b0])
    assert pool.blocks[b0].ref_cnt == 0 and pool.free_block_ids() == [1, 2, 0]
    pool.touch([b0])  # prefix hit on an idle cached block
    assert pool.blocks[b0].ref_cnt == 1 and pool.free_block_ids() == [1, 2]
    assert pool.num_reused_blocks_total == 2
    pool.check_invariants(full=True)


def test_duplicate_hash_is_not_published_twice():
    pool = BlockPool(2)
    a, b = pool.allocate(2)
    assert pool.cache_block(a, b"42", [4, 2])
    assert not pool.cache_block(b, b"42", [4, 2])
    assert pool.get_cached_block(b"42", [4, 2]) == a and pool.blocks[b].block_hash is None


def test_chained_hash_depends_on_the_prefix():
    h1 = hash_block_tokens(None, [1, 2])
    assert hash_block_tokens(h1, [3, 4]) != hash_block_tokens(hash_block_tokens(None, [9, 9]), [3, 4])
    assert hash_block_tokens(h1, [3, 4]) == hash_block_tokens(hash_block_tokens(None, (1, 2)), (3, 4))


def test_a_hit_on_the_hash_with_other_token_ids_is_a_miss():
    pool = BlockPool(2)
    [b0] = pool.allocate(1)
    pool.cache_block(b0, b"same-hash", [1, 2, 3, 4])
    assert pool.get_cached_block(b"same-hash", [1, 2, 3, 5]) is None
    assert pool.get_cached_block(b"same-hash", (1, 2, 3, 4)) == b0


def test_an_evicted_block_forgets_its_token_ids():
    pool = BlockPool(1)
    [b0] = pool.allocate(1)
    pool.cache_block(b0, b"h", [1, 2])
    pool.free([b0])
    pool.allocate(1)
    assert pool.blocks[b0].block_hash is None and pool.blocks[b0].token_ids == ()


def test_block_digest_is_128_bits_and_not_python_hash():
    # hash() of a tuple of small ints is invertible and equal across prompts built to collide; the digest is
    # BLAKE2b over the parent digest and the token ids as int64.
    d = hash_block_tokens(None, [1, 2])
    assert isinstance(d, bytes) and len(d) == 16
    assert hash_block_tokens(None, [-1]) != hash_block_tokens(None, [-2])  # hash(-1) == hash(-2) in CPython


def test_events_record_published_and_evicted_blocks_in_order_when_asked():
    pool = BlockPool(2)
    [b0, b1] = pool.allocate(2)
    h0 = hash_block_tokens(None, [1, 2])
    assert pool.cache_block(b0, h0, [1, 2])  # no consumer yet: nothing recorded, nothing kept
    pool.events = []
    h1 = hash_block_tokens(h0, [3, 4])
    assert pool.cache_block(b1, h1, [3, 4], parent_hash=h0)
    assert not pool.cache_block(b1, h1, [3, 4], parent_hash=h0)  # a duplicate is no event
    pool.free([b1, b0])
    pool.allocate(1)  # evicts b1 (the LRU head), whose hash goes
    assert pool.events == [("stored", h1, h0, (3, 4)), ("removed", h1)]
    assert pool.cached_hashes() == [h0]
