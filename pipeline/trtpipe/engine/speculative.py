"""Draft verification as a pure function, plus the acceptance histogram.

The target model has scored the pending token and k draft tokens in one forward, giving k+1 final
distributions: row i is the target's distribution for the position of draft i, row k the one after
the last draft (the bonus position).
"""

from __future__ import annotations

import numpy as np

from .sampling import draw


def verify(
    draft_token_ids: list[int],
    target_probs: np.ndarray,
    draft_probs: np.ndarray | None,
    rng: np.random.Generator | None,
) -> tuple[int, int]:
    """-> (num_accepted, bonus_token). rng None means greedy.

    target_probs: (k+1, V) final target distributions; draft_probs: (k, V) or None.
    """
    k = len(draft_token_ids)
    for i, token in enumerate(draft_token_ids):
        p_target = target_probs[i]
        if rng is None:
            # greedy: accept while the draft equals the target's argmax; the argmax is the bonus.
            best = int(np.argmax(p_target))
            if best != token:
                return i, best
            continue
        # Without draft probs the draft is deterministic: q is one-hot on its token.
        p_draft = draft_probs[i] if draft_probs is not None else _one_hot(token, p_target.shape[0])
        # sampled: accept with probability min(1, p_target / p_draft) ...
        if rng.random() * p_draft[token] < p_target[token]:
            continue
        # ... else draw from the normalised residual max(p_target - p_draft, 0).
        residual = np.maximum(p_target - p_draft, 0.0)
        if residual.sum() <= 0.0:  # target == draft up to rounding; any target draw is exact
            residual = p_target
        return i, draw(residual / residual.sum(), rng)
    last = target_probs[k]
    return k, int(np.argmax(last)) if rng is None else draw(last, rng)


def _one_hot(token: int, vocab: int) -> np.ndarray:
    q = np.zeros(vocab, dtype=np.float64)
    q[token] = 1.0
    return q


class AcceptCounts:
    """counts[n] = verify calls that accepted exactly n drafts (gpt-fast's accept_counts)."""

    def __init__(self) -> None:
        self.counts: list[int] = []

    def record(self, num_accepted: int) -> None:
        while len(self.counts) <= num_accepted:
            self.counts.append(0)
        self.counts[num_accepted] += 1

    @property
    def num_verify_calls(self) -> int:
        return sum(self.counts)

    @property
    def tokens_per_target_step(self) -> float:
        """Mean tokens emitted per verify: accepted drafts + the bonus token."""
        calls = self.num_verify_calls
        return sum((n + 1) * c for n, c in enumerate(self.counts)) / calls if calls else 0.0
