"""KVCacheManager: the per-sequence verbs over a BlockPool, and the K/V arrays themselves.

The scheduler talks only to this class. Out of room is `None`, and a call that returns None has
changed nothing, so the scheduler can try a cheaper plan (preempt, wait) without undoing anything.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .block_pool import BlockHash, BlockPool, hash_block_tokens, num_blocks_for
from .config import LlamaConfig
from .protocol import EngineLimits
from .sequence import Sequence


def read_mem_available_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the value is in kB
    except OSError:
        pass
    return None


def num_kv_blocks(cfg: LlamaConfig, limits: EngineLimits) -> int:
    """KV capacity in blocks: the explicit token count if set, else a fraction of free host memory.

    The memory-based size is capped at max_batch_size * max_seq_len tokens: more could never be used
    at once, and tests should not reserve gigabytes.
    """
    bs = limits.tokens_per_block
    if limits.max_tokens_in_paged_kv_cache is not None:
        num_tokens = limits.max_tokens_in_paged_kv_cache
    else:
        available = read_mem_available_bytes() or 1 << 30
        num_tokens = int(available * limits.kv_cache_free_mem_fraction) // cfg.kv_bytes_per_token()
        num_tokens = min(num_tokens, limits.max_batch_size * limits.max_seq_len)
    num_blocks = num_tokens // bs
    if num_blocks < num_blocks_for(limits.max_seq_len, bs):
        raise ValueError(
            f"the paged KV cache holds {num_blocks} blocks of {bs} tokens, fewer than one sequence of "
            f"`max_seq_len`={limits.max_seq_len} needs ({num_blocks_for(limits.max_seq_len, bs)}); "
            "raise `max_tokens_in_paged_kv_cache` or lower `max_seq_len`"
        )
    return num_blocks


class KVCacheManager:
    def __init__(self, cfg: LlamaConfig, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.pool = BlockPool(num_blocks)
        shape = (cfg.num_hidden_layers, num_blocks, block_size, cfg.num_key_value_heads, cfg.head_dim)
        # np.zeros maps zero pages lazily, so an unused cache costs address space, not memory.
        self.k_cache = np.zeros(shape, dtype=np.float32)  # (layers, num_blocks, block_size, n_kv, d)
        self.v_cache = np.zeros(shape, dtype=np.float32)
        self._num_published: dict[int, int] = {}  # seq_id -> leading blocks already in the prefix map
        # As vLLM counts them, in tokens: every admission queries its whole sequence, hits are the reused prefix.
        self.prefix_cache_queries = 0
        self.prefix_cache_hits = 0

    @property
    def num_free_blocks(self) -> int:
        return self.pool.num_free_blocks

    def _block_hashes(self, seq: Sequence, num_full_blocks: int) -> list[BlockHash]:
        """Chained hashes of seq's first num_full_blocks blocks; memoised on the sequence."""
        bs = self.block_size
        hashes = seq.block_hashes
        while len(hashes) < num_full_blocks:
            i = len(hashes)
            parent = hashes[-1] if hashes else None
            hashes.append(hash_block_tokens(parent, seq.token_ids[i * bs:(i + 1) * bs]))
        return hashes[:num_full_blocks]

    def get_computed_blocks(self, seq: Sequence) -> tuple[list[int], int]:
        """Longest cached prefix of seq's committed tokens, in whole blocks: (block ids, num tokens).

        At least one token is always left to compute, because sampling needs the last token's logits.
        Looking up touches nothing; `allocate_slots(seq, n, computed_blocks)` takes the hit.
        """
        if not self.enable_prefix_caching or seq.num_computed_tokens:
            return [], 0
        bs = self.block_size
        block_ids: list[int] = []
        for i, h in enumerate(self._block_hashes(seq, (seq.num_tokens - 1) // bs)):
            b = self.pool.get_cached_block(h, seq.token_ids[i * bs:(i + 1) * bs])
            if b is None:
                break
            block_ids.append(b)
        return block_ids, len(block_ids) * bs

    def record_admission(self, seq: Sequence, num_hit_tokens: int) -> None:
        """Count one admission's prefix-cache query (seq's tokens) and hit (the reused tokens)."""
        if self.enable_prefix_caching:
            self.prefix_cache_queries += seq.num_tokens
            self.prefix_cache_hits += num_hit_tokens

    def num_blocks_to_take(self, seq: Sequence, num_tokens: int, computed_blocks: list[int] | None = None) -> int:
        """Free-queue blocks seq would consume to hold num_tokens slots in total after this hit."""
        computed_blocks = computed_blocks or []
        have = len(seq.block_table) + len(computed_blocks)
        return max(0, num_blocks_for(num_tokens, self.block_size) - have) + self.pool.num_free_among(computed_blocks)

    def allocate_slots(
        self, seq: Sequence, num_new_tokens: int, computed_blocks: list[int] | None = None
    ) -> list[int] | None:
        """Make room for num_new_tokens after seq's computed tokens (and after a prefix hit, if given).

        Returns the newly allocated block ids (possibly []), or None, changing nothing, if the free
        queue is too short. The caller advances num_computed_tokens past the hit itself.
        """
        if not computed_blocks and seq.num_computed_tokens + num_new_tokens <= len(seq.block_table) * self.block_size:
            return []  # the common decode step: the last block still has room
        computed_blocks = computed_blocks or []
        if computed_blocks:
            assert not seq.block_table, "a prefix hit only applies to a sequence holding no blocks"
        num_computed = seq.num_computed_tokens + len(computed_blocks) * self.block_size
        if self.num_blocks_to_take(seq, num_computed + num_new_tokens, computed_blocks) > self.pool.num_free_blocks:
            return None
        # Touch before allocating, so the allocation cannot evict the very blocks we just hit.
        self.pool.touch(computed_blocks)
        if computed_blocks:
            seq.block_table.extend(computed_blocks)
            self._num_published[seq.seq_id] = len(computed_blocks)  # hit blocks are published already
        num_new_blocks = num_blocks_for(num_computed + num_new_tokens, self.block_size) - len(seq.block_table)
        new_blocks = self.pool.allocate(max(0, num_new_blocks))
        assert new_blocks is not None  # checked above
        seq.block_table.extend(new_blocks)
        return new_blocks

    def append(self, seq: Sequence) -> None:
        """Account for K/V just written: publish blocks now full of committed, computed tokens."""
        if not self.enable_prefix_caching:
            return
        num_full = min(seq.num_computed_tokens, seq.num_tokens) // self.block_size
        start = self._num_published.get(seq.seq_id, 0)
        if num_full <= start:
            return
        hashes, bs = self._block_hashes(seq, num_full), self.block_size
        for i in range(start, num_full):
            self.pool.cache_block(seq.block_table[i], hashes[i], seq.token_ids[i * bs:(i + 1) * bs],
                                  hashes[i - 1] if i else None)
        self._num_published[seq.seq_id] = num_full

    def truncate(self, seq: Sequence, num_tokens: int) -> None:
        """Keep only the blocks covering the first num_tokens slots (rejected drafts' tail goes)."""
        keep = num_blocks_for(num_tokens, self.block_size)
        assert self._num_published.get(seq.seq_id, 0) <= keep, "truncating into published blocks"
        tail = seq.block_table[keep:]
        del seq.block_table[keep:]
        self.pool.free(reversed(tail))

    def free(self, seq: Sequence) -> None:
        """Release every block; published ones stay findable until evicted."""
        self.pool.free(reversed(seq.block_table))
        seq.block_table.clear()
        self._num_published.pop(seq.seq_id, None)
