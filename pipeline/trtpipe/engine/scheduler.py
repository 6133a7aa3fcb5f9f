"""Scheduler: who runs this step and with how many tokens. It talks to the KVCacheManager only.

`schedule()` returns a StepPlan; the engine runs it and hands back a StepResult; `update(plan,
result)` commits tokens and closes the loop. No state is shared outside those two objects.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .block_pool import num_blocks_for
from .kv_cache import KVCacheManager
from .protocol import EngineLimits
from .sequence import Sequence, SequenceStatus


@dataclass
class StepPlan:
    scheduled: list[Sequence] = field(default_factory=list)  # forward order
    num_scheduled_tokens: dict[int, int] = field(default_factory=dict)  # seq_id -> tokens this step
    num_logits: dict[int, int] = field(default_factory=dict)  # seq_id -> trailing rows to sample/verify from
    new_block_ids: dict[int, list[int]] = field(default_factory=dict)
    seq_ids_to_verify: list[int] = field(default_factory=list)
    preempted_seq_ids: list[int] = field(default_factory=list)

    @property
    def total_num_scheduled_tokens(self) -> int:
        return sum(self.num_scheduled_tokens.values())

    @property
    def is_empty(self) -> bool:
        return not self.scheduled


@dataclass
class SeqResult:
    token_ids: list[int]  # sampled token, or accepted drafts + the bonus token
    log_probs: list[float] | None
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0


@dataclass
class StepResult:
    per_seq: dict[int, SeqResult]  # only sequences whose chunk reached their last token


@dataclass
class SeqUpdate:
    seq: Sequence
    new_token_ids: list[int]
    new_log_probs: list[float] | None


class Scheduler:
    def __init__(self, limits: EngineLimits, kv: KVCacheManager) -> None:
        self.limits = limits
        self.kv = kv
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []  # admission order: [0] is the oldest

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> StepPlan:
        # The one rule: each step, every running sequence is owed num_tokens_with_drafts -
        # num_computed_tokens tokens, served oldest first out of a budget of max_num_tokens. A fresh
        # prompt owes its whole length (chunked prefill when the budget is short), a prefix hit
        # pre-advances num_computed_tokens, a decoding sequence owes 1, and a draft request owes its
        # k drafts on top. The two batch policies are only admission rules on top of this.
        plan = StepPlan()
        budget = self._schedule_running(plan, self.limits.max_num_tokens)
        # A preemption this step means memory is short: admit nobody until it is not.
        if not plan.preempted_seq_ids:
            self._admit_waiting(plan, budget)
        self._check_plan(plan)
        return plan

    def _schedule_running(self, plan: StepPlan, budget: int) -> int:
        """Serve running sequences oldest first; returns the budget left."""
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = self._num_new_tokens(seq, seq.num_computed_tokens, budget)
            if n == 0:
                i += 1
                continue
            new_blocks = self.kv.allocate_slots(seq, n)
            while new_blocks is None:
                # Out of blocks (max_utilization only, by construction): recompute the newest later.
                victim = self.running[-1]
                self._preempt(victim)
                plan.preempted_seq_ids.append(victim.seq_id)
                if victim is seq:
                    return budget  # every sequence after it has been preempted already
                new_blocks = self.kv.allocate_slots(seq, n)
            self._add_to_plan(plan, seq, n, new_blocks)
            budget -= n
            i += 1
        return budget

    def _admit_waiting(self, plan: StepPlan, budget: int) -> None:
        """First come, first served: the queue head blocks everyone behind it."""
        while self.waiting and budget > 0 and len(self.running) < self.limits.max_batch_size:
            seq = self.waiting[0]
            computed_blocks, num_hit_tokens = self.kv.get_computed_blocks(seq)
            n = self._num_new_tokens(seq, num_hit_tokens, budget)
            if n == 0 or not self._can_admit(seq, computed_blocks):
                return
            new_blocks = self.kv.allocate_slots(seq, n, computed_blocks)
            if new_blocks is None:
                return
            self.waiting.popleft()
            self.kv.record_admission(seq, num_hit_tokens)
            seq.status = SequenceStatus.RUNNING
            seq.num_computed_tokens = num_hit_tokens
            if seq.num_cached_tokens is None:
                seq.num_cached_tokens = num_hit_tokens
            self.running.append(seq)
            self._add_to_plan(plan, seq, n, new_blocks)
            budget -= n

    def _num_new_tokens(self, seq: Sequence, num_computed: int, budget: int) -> int:
        remaining = seq.num_tokens_with_drafts - num_computed
        if remaining <= budget:
            return remaining
        if not self.limits.enable_chunked_context:
            return 0
        if seq.draft_token_ids:
            # The last committed token and every draft must share one forward: their logits are
            # what verification compares. Chunk only the tokens before them.
            return max(0, min(budget, seq.num_tokens - 1 - num_computed))
        return budget

    def _can_admit(self, seq: Sequence, computed_blocks: list[int]) -> bool:
        if self.limits.batch_scheduler_policy == "guaranteed_no_evict":
            # Room for this request's whole life, after what running sequences may still claim.
            reserved = sum(num_blocks_for(s.max_total_tokens, self.kv.block_size) - s.num_blocks
                           for s in self.running)
            need = self.kv.num_blocks_to_take(seq, seq.max_total_tokens, computed_blocks)
            return need <= self.kv.num_free_blocks - reserved
        # max_utilization: the prompt must fit now; running out later preempts the newest.
        return self.kv.num_blocks_to_take(seq, seq.num_tokens_with_drafts, computed_blocks) <= self.kv.num_free_blocks

    def _add_to_plan(self, plan: StepPlan, seq: Sequence, n: int, new_blocks: list[int]) -> None:
        plan.scheduled.append(seq)
        plan.num_scheduled_tokens[seq.seq_id] = n
        plan.new_block_ids[seq.seq_id] = new_blocks
        if seq.num_computed_tokens + n == seq.num_tokens_with_drafts:
            plan.num_logits[seq.seq_id] = 1 + len(seq.draft_token_ids)
            if seq.draft_token_ids:
                plan.seq_ids_to_verify.append(seq.seq_id)

    def _preempt(self, seq: Sequence) -> None:
        """Preempt by recompute: drop the KV (published blocks stay in the prefix cache)."""
        self.running.remove(seq)
        self.kv.free(seq)
        seq.num_computed_tokens = 0
        seq.status = SequenceStatus.PREEMPTED
        self.waiting.appendleft(seq)

    def abort(self, seq: Sequence) -> None:
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.kv.free(seq)
        seq.status = SequenceStatus.FINISHED_ABORTED

    def update(self, plan: StepPlan, result: StepResult) -> list[SeqUpdate]:
        """Advance counters, commit sampled tokens, drop rejected drafts' KV, retire finished ones."""
        updates = []
        for seq in plan.scheduled:
            seq.num_computed_tokens += plan.num_scheduled_tokens[seq.seq_id]
            res = result.per_seq.get(seq.seq_id)
            if res is not None:
                if seq.draft_token_ids:
                    seq.num_draft_tokens = res.num_draft_tokens
                    seq.num_accepted_draft_tokens = res.num_accepted_draft_tokens
                    # Only the accepted drafts' K/V is valid; the bonus token has none yet.
                    seq.num_computed_tokens = seq.num_tokens + res.num_accepted_draft_tokens
                    self.kv.truncate(seq, seq.num_computed_tokens)
                token_ids, log_probs = seq.commit(res.token_ids, res.log_probs)
                updates.append(SeqUpdate(seq, token_ids, log_probs))
            self.kv.append(seq)
            if seq.is_finished:
                self.running.remove(seq)
                self.kv.free(seq)
        return updates

    # -- invariants (our bugs only) -------------------------------------------------------------
    def _check_plan(self, plan: StepPlan) -> None:
        assert plan.total_num_scheduled_tokens <= self.limits.max_num_tokens
        assert len(self.running) <= self.limits.max_batch_size
        self.kv.pool.check_invariants()
        bs = self.kv.block_size
        for seq in self.running:
            n = plan.num_scheduled_tokens.get(seq.seq_id, 0)
            assert seq.num_blocks == num_blocks_for(seq.num_computed_tokens + n, bs), (
                f"seq {seq.seq_id}: {seq.num_blocks} blocks for {seq.num_computed_tokens}+{n} tokens")

    def check_invariants(self) -> None:
        """Between steps: block accounting adds up and every table covers exactly its computed tokens."""
        self.kv.pool.check_invariants()
        bs = self.kv.block_size
        for seq in self.running:
            assert seq.num_blocks == num_blocks_for(seq.num_computed_tokens, bs)
            assert seq.num_computed_tokens <= seq.num_tokens
        for seq in self.waiting:
            assert not seq.block_table and seq.num_computed_tokens == 0
