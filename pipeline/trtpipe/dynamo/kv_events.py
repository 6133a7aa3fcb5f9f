"""The engine block pool's events -> Dynamo KV events, so Dynamo's KV router knows which prefixes each worker holds.

The pool (engine/block_pool.py) records ("stored", hash, parent_hash, token_ids) when a full block is published
for prefix reuse and ("removed", hash) when a published block is evicted. Dynamo's router matches a request by
hashing its own blocks of token ids (the `token_ids` of a stored event), and uses the block hashes we send only
as identities: to chain a block to its parent and to remove it later. Our hashes are 128-bit BLAKE2b digests;
Dynamo takes signed 64-bit integers, so each is cut to its first 8 bytes (a collision would cost the router one
wrong guess about where a prefix lives, never wrong K/V: the engine checks every hit's tokens itself).
"""

from __future__ import annotations

from typing import Any, Protocol


class KvPublisher(Protocol):
    """The part of dynamo.llm.KvEventPublisher we use."""

    def publish_stored(self, token_ids: list[int], num_block_tokens: list[int], block_hashes: list[int],
                       parent_hash: int | None = None) -> None: ...

    def publish_removed(self, block_hashes: list[int]) -> None: ...


def dynamo_hash(block_hash: bytes) -> int:
    return int.from_bytes(block_hash[:8], "little", signed=True)


def publish_events(events: list[tuple], publisher: KvPublisher) -> int:
    """Send the pool's events in order, runs of stored blocks that chain one to the next as one event each.
    Returns the number of Dynamo events sent."""
    sent = 0
    run: list[tuple] = []  # consecutive stored blocks, each the child of the one before

    def flush() -> None:
        nonlocal sent, run
        if run:
            tokens = [t for _, _, _, ids in run for t in ids]
            publisher.publish_stored(tokens, [len(ids) for _, _, _, ids in run], [dynamo_hash(h) for _, h, _, _ in run],
                                     None if run[0][2] is None else dynamo_hash(run[0][2]))
            sent += 1
            run = []

    for event in events:
        if event[0] == "stored":
            if run and event[2] != run[-1][1]:
                flush()
            run.append(event)
        else:
            flush()
            publisher.publish_removed([dynamo_hash(event[1])])
            sent += 1
    flush()
    return sent


def removed_all(hashes: list[bytes], publisher: KvPublisher) -> None:
    """Everything a dropped pool held (a version switch replaces the engine, and its cache with it)."""
    if hashes:
        publisher.publish_removed([dynamo_hash(h) for h in hashes])


def load_snapshot(stats: dict[str, Any]) -> dict[str, Any]:
    """Engine.stats() -> the load numbers Dynamo's router and /metrics read (ComponentSnapshot's fields)."""
    total = max(1, int(stats.get("kv_blocks_total", 0)))
    used = int(stats.get("kv_blocks_used", 0))
    queries = stats.get("prefix_cache_queries", 0)
    return {"kv_used_blocks": used, "kv_total_blocks": total, "gpu_cache_usage": used / total,
            "kv_cache_hit_rate": (stats.get("prefix_cache_hits", 0) / queries) if queries else None}
