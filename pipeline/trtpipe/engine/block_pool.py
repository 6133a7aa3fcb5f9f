"""BlockPool: KV blocks, their reference counts, the LRU free queue and the prefix-cache map.

Design forces:
- A freed block keeps its K/V and its hash: it stays findable by prefix lookup until it is handed
  out again. So "free" and "cached" overlap, and the free queue is also the eviction order.
- Eviction must be LRU and O(1), and a prefix hit must pull a block out of the middle of the queue
  in O(1): an OrderedDict (insertion-ordered, O(1) delete) is exactly that queue.
- Callers free a sequence's blocks tail first, so a sequence's last blocks (the least shareable)
  are evicted before its first ones.
- A hit must never serve another prompt's K/V. The key is a chained BLAKE2b digest (the block's tokens and
  everything before them), which no prompt can collide with by chance or on purpose (Python's `hash()` of
  ints is trivially invertible); and every hit also compares the block's own token ids, as nano-vllm does,
  so a bug in or a stand-in for the digest costs a miss, never wrong K/V.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable
from collections.abc import Sequence as AbcSequence
from dataclasses import dataclass


def num_blocks_for(num_tokens: int, block_size: int) -> int:
    return math.ceil(num_tokens / block_size)


BlockHash = bytes


def hash_block_tokens(parent_hash: BlockHash | None, token_ids: Iterable[int]) -> BlockHash:
    """Chained digest: a block's identity is its tokens *and* everything before them (128-bit BLAKE2b)."""
    h = hashlib.blake2b(parent_hash or b"", digest_size=16)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


@dataclass
class KVBlock:
    block_id: int
    ref_cnt: int = 0
    block_hash: BlockHash | None = None  # set once the block is full of committed tokens and published
    token_ids: tuple[int, ...] = ()  # the tokens it was published with: every hit compares them


class BlockPool:
    def __init__(self, num_blocks: int) -> None:
        if num_blocks < 1:
            raise ValueError(f"a block pool needs at least one block; given {num_blocks}")
        self.blocks = [KVBlock(i) for i in range(num_blocks)]
        # Head = least recently freed = evicted first.
        self._free_queue: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self._cached: dict[BlockHash, int] = {}  # block_hash -> block_id
        self._num_used = 0  # counted on its own so that used + free == total is a real check
        self.num_reused_blocks_total = 0  # prefix hits, cumulative
        self.num_evicted_blocks_total = 0  # cached blocks whose hash was dropped to reuse them
        # A consumer of KV events (the Dynamo worker's KV router feed) sets this to a list; the pool then appends
        # ("stored", hash, parent_hash, token_ids) when a block is published and ("removed", hash) when a published
        # block is evicted, in the order they happen. None (the default) records nothing.
        self.events: list[tuple] | None = None

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def num_free_blocks(self) -> int:
        return len(self._free_queue)

    @property
    def num_used_blocks(self) -> int:
        return self._num_used

    def free_block_ids(self) -> list[int]:
        """The free queue in eviction order (for tests and debugging)."""
        return list(self._free_queue)

    def get_cached_block(self, block_hash: BlockHash, token_ids: AbcSequence[int]) -> int | None:
        """The published block with this hash *and* these token ids, or None."""
        b = self._cached.get(block_hash)
        if b is None or self.blocks[b].token_ids != tuple(token_ids):
            return None  # a miss, or a hash collision with another block's tokens
        return b

    def num_free_among(self, block_ids: Iterable[int]) -> int:
        """How many of these (cached) blocks a touch would take out of the free queue."""
        return sum(1 for b in block_ids if self.blocks[b].ref_cnt == 0)

    def touch(self, block_ids: Iterable[int]) -> None:
        """Prefix hit: share these cached blocks, pulling any idle one out of the free queue."""
        for b in block_ids:
            block = self.blocks[b]
            if block.ref_cnt == 0:
                del self._free_queue[b]
                self._num_used += 1
            block.ref_cnt += 1
            self.num_reused_blocks_total += 1

    def allocate(self, num_blocks: int) -> list[int] | None:
        """Fresh blocks from the head of the free queue, evicting their cached hashes; None if short."""
        if num_blocks > len(self._free_queue):
            return None
        block_ids = []
        for _ in range(num_blocks):
            b, _ = self._free_queue.popitem(last=False)
            block = self.blocks[b]
            if block.block_hash is not None:
                del self._cached[block.block_hash]
                if self.events is not None:
                    self.events.append(("removed", block.block_hash))
                block.block_hash, block.token_ids = None, ()
                self.num_evicted_blocks_total += 1
            block.ref_cnt = 1
            block_ids.append(b)
        self._num_used += num_blocks
        return block_ids

    def free(self, block_ids: Iterable[int]) -> None:
        """Drop one reference each; blocks that reach zero join the queue's tail in the given order."""
        for b in block_ids:
            block = self.blocks[b]
            assert block.ref_cnt > 0, f"double free of block {b}"
            block.ref_cnt -= 1
            if block.ref_cnt == 0:
                self._free_queue[b] = None
                self._num_used -= 1

    def cache_block(self, block_id: int, block_hash: BlockHash, token_ids: AbcSequence[int],
                    parent_hash: BlockHash | None = None) -> bool:
        """Publish a full block under its hash. False if a block with this hash is already published.

        parent_hash (the previous block's hash; None for a first block) only goes into the event."""
        block = self.blocks[block_id]
        if block.block_hash is not None or block_hash in self._cached:
            return False
        block.block_hash, block.token_ids = block_hash, tuple(token_ids)
        self._cached[block_hash] = block_id
        if self.events is not None:
            self.events.append(("stored", block_hash, parent_hash, block.token_ids))
        return True

    def cached_hashes(self) -> list[BlockHash]:
        """Every published hash (a KV-event consumer that starts late, or drops this pool, sends these)."""
        return list(self._cached)

    def check_invariants(self, full: bool = False) -> None:
        assert self.num_used_blocks + self.num_free_blocks == self.num_blocks
        if not full:  # the O(num_blocks) checks are for tests
            return
        assert all((b.ref_cnt == 0) == (b.block_id in self._free_queue) for b in self.blocks)
        assert all(self.blocks[b].block_hash == h for h, b in self._cached.items())
