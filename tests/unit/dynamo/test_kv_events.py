"""The block pool's events -> Dynamo KV event calls, from a real engine run (no Dynamo needed)."""

from __future__ import annotations

from trtpipe.dynamo.kv_events import dynamo_hash, load_snapshot, publish_events
from trtpipe.engine import Engine, EngineLimits
from trtpipe.engine.block_pool import hash_block_tokens

from ..engine.tiny import build_engine_dir


class RecordingPublisher:
    """Records what the worker would send Dynamo's KvEventPublisher."""

    def __init__(self):
        self.calls: list[tuple] = []

    def publish_stored(self, token_ids, num_block_tokens, block_hashes, parent_hash=None):
        self.calls.append(("stored", token_ids, num_block_tokens, block_hashes, parent_hash))

    def publish_removed(self, block_hashes):
        self.calls.append(("removed", block_hashes))


def test_dynamo_hash_is_a_signed_64_bit_cut_of_the_digest():
    h = hash_block_tokens(None, [1, 2, 3])
    assert -2**63 <= dynamo_hash(h) < 2**63 and dynamo_hash(h) == int.from_bytes(h[:8], "little", signed=True)


def test_a_prompts_blocks_are_announced_as_one_chain_and_evicted_blocks_as_removed(tmp_path):
    bs = 8
    engine = Engine.from_dir(build_engine_dir(tmp_path), EngineLimits(
        max_batch_size=2, max_seq_len=64, max_num_tokens=64, tokens_per_block=bs, max_tokens_in_paged_kv_cache=64))
    pool = engine.kv.pool
    pool.events = []
    prompt = list(range(1, 26))  # 3 full blocks and one partial
    engine.generate([prompt], max_new_tokens=2)
    pub = RecordingPublisher()
    assert publish_events(pool.events, pub) == 1
    h = [hash_block_tokens(None, prompt[:8])]
    for i in (1, 2):
        h.append(hash_block_tokens(h[-1], prompt[i * bs:(i + 1) * bs]))
    assert pub.calls == [("stored", prompt[:24], [8, 8, 8], [dynamo_hash(x) for x in h], None)]

    pool.events = []
    engine.generate([[60 + i for i in range(60)]], max_new_tokens=2)  # needs every block: the cached ones go
    pub = RecordingPublisher()
    publish_events(pool.events, pub)
    removed = [c[1][0] for c in pub.calls if c[0] == "removed"]
    assert sorted(removed) == sorted(dynamo_hash(x) for x in h)
    stored = [c for c in pub.calls if c[0] == "stored"]
    assert stored and stored[0][4] is None  # a new chain starts at its first block


def test_load_snapshot_reports_used_blocks_and_the_hit_rate_once_there_are_queries():
    assert load_snapshot({"kv_blocks_total": 10, "kv_blocks_used": 4, "prefix_cache_queries": 0}) == {
        "kv_used_blocks": 4, "kv_total_blocks": 10, "gpu_cache_usage": 0.4, "kv_cache_hit_rate": None}
    assert load_snapshot({"kv_blocks_total": 10, "kv_blocks_used": 0, "prefix_cache_queries": 100,
                          "prefix_cache_hits": 25})["kv_cache_hit_rate"] == 0.25
