"""Sequence: the one owner of a request's mutable state.

Tokens, counters, status, drafts and the sampling RNG live here. `block_table` and `block_hashes` are
written only by the KVCacheManager; everyone else reads tokens through `token_ids`, a read-only view.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from collections.abc import Sequence as AbcSequence

import numpy as np

from .protocol import EngineRequest, SamplingParams


class SequenceStatus(enum.IntEnum):
    # Ordered so that "finished" is one comparison.
    WAITING = 0
    RUNNING = 1
    PREEMPTED = 2  # back in the waiting queue; its KV is gone and will be recomputed
    FINISHED_STOPPED = 3
    FINISHED_LENGTH = 4
    FINISHED_ABORTED = 5

    @property
    def is_finished(self) -> bool:
        return self >= SequenceStatus.FINISHED_STOPPED


FINISH_REASONS = {
    SequenceStatus.FINISHED_STOPPED: "stop",
    SequenceStatus.FINISHED_LENGTH: "length",
    SequenceStatus.FINISHED_ABORTED: "cancelled",
}


class TokenView(AbcSequence):
    """Read-only window on a list that keeps growing; no copy per access."""

    def __init__(self, data: list[int]) -> None:
        self._data = data

    def __getitem__(self, i):  # type: ignore[override]
        return self._data[i]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[int]:
        return iter(self._data)

    def __repr__(self) -> str:
        return f"TokenView({self._data!r})"


class Sequence:
    def __init__(self, seq_id: int, request: EngineRequest, rng: np.random.Generator) -> None:
        self.seq_id = seq_id
        self.request_id = request.request_id
        self._token_ids: list[int] = list(request.prompt_token_ids)
        self.token_ids = TokenView(self._token_ids)
        self.num_prompt_tokens = len(self._token_ids)
        self.num_computed_tokens = 0
        self.block_table: list[int] = []  # written by KVCacheManager only
        self.block_hashes: list[bytes] = []  # chained digests of full blocks; KVCacheManager only
        self.status = SequenceStatus.WAITING
        self.max_new_tokens = request.max_new_tokens
        self.end_id = request.end_id
        self.stop_token_ids = [list(s) for s in request.stop_token_ids if s]
        self.sampling: SamplingParams = request.sampling
        self.return_log_probs = request.return_log_probs
        self.rng = rng
        self.draft_token_ids: list[int] = list(request.draft_token_ids or [])
        self.draft_logits = request.draft_logits
        self.is_draft_request = bool(self.draft_token_ids)
        self.num_draft_tokens = 0
        self.num_accepted_draft_tokens = 0
        self.num_cached_tokens: int | None = None  # prefix-cache hit at first admission
        self.grammar = request.grammar  # advanced by commit() only
        self.num_top_log_probs = request.num_top_log_probs

    # -- derived facts --------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return len(self._token_ids)

    @property
    def num_tokens_with_drafts(self) -> int:
        """What the scheduler owes this sequence: committed tokens plus drafts to verify."""
        return len(self._token_ids) + len(self.draft_token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self._token_ids) - self.num_prompt_tokens

    @property
    def num_blocks(self) -> int:
        return len(self.block_table)

    @property
    def max_total_tokens(self) -> int:
        """Upper bound on the KV slots this sequence will ever hold (what no-evict admission reserves)."""
        return self.num_prompt_tokens + max(self.max_new_tokens, len(self.draft_token_ids) + 1)

    @property
    def is_finished(self) -> bool:
        return self.status.is_finished

    @property
    def finish_reason(self) -> str | None:
        return FINISH_REASONS.get(self.status)

    def tokens_with_drafts(self, start: int, end: int) -> list[int]:
        n = len(self._token_ids)
        if end <= n:
            return self._token_ids[start:end]
        return self._token_ids[start:] + self.draft_token_ids[max(0, start - n): end - n]

    # -- mutation -------------------------------------------------------------------------------
    def commit(
        self, new_token_ids: list[int], new_log_probs: list[float] | None
    ) -> tuple[list[int], list[float] | None]:
        """Append this step's tokens, stopping at the first stop condition; drafts are consumed.

        Returns the tokens (and log-probs) that were kept, which is what the caller streams: end_id
        is dropped, a matched stop sequence is kept. A draft request is a single verify call, so it
        finishes here even when fewer than max_new_tokens were produced.
        """
        kept: list[int] = []
        for token in new_token_ids:
            if token == self.end_id and self.num_output_tokens >= self.sampling.min_tokens:
                self.status = SequenceStatus.FINISHED_STOPPED
                break
            self._token_ids.append(token)
            kept.append(token)
            if self.grammar is not None and self._advance_grammar(token):
                self.status = SequenceStatus.FINISHED_STOPPED
                break
            if self._matches_stop_sequence():
                self.status = SequenceStatus.FINISHED_STOPPED
                break
            if self.num_output_tokens >= self.max_new_tokens:
                self.status = SequenceStatus.FINISHED_LENGTH
                break
        if self.is_draft_request and not self.is_finished:
            self.status = SequenceStatus.FINISHED_LENGTH
        self.draft_token_ids = []
        self.draft_logits = None
        return kept, (new_log_probs[: len(kept)] if new_log_probs is not None else None)

    def _advance_grammar(self, token: int) -> bool:
        """Feed the grammar a kept token; True when the grammar is complete (the sequence stops there)."""
        # NOTE: the sampler only offers tokens the grammar allows, so a refusal means the matcher broke (an
        # error state). It ends this sequence only: an exception here would fail the whole batch's step.
        return not self.grammar.accept(token) or self.grammar.is_stopped

    def _matches_stop_sequence(self) -> bool:
        for stop in self.stop_token_ids:
            # Only a match that ends in generated text counts; the prompt alone never stops a request.
            if len(stop) <= self.num_tokens and self._token_ids[-len(stop):] == stop:
                return True
        return False
