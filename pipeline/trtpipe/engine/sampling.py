"""Turning logits into the next token: penalties, min_tokens, temperature, top-k, top-p, seeded draws.

Each request owns a numpy Generator seeded from its `seed`, and each sampled token consumes exactly
one uniform draw from it, so a request's output does not depend on who it is batched with.
"""

from __future__ import annotations

import os
from collections.abc import Sequence as Seq

import numpy as np

from .protocol import SamplingParams


def make_rng(seed: int | None) -> np.random.Generator:
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "little")
    return np.random.default_rng(seed)


def apply_penalties(
    logits: np.ndarray, context_ids: Seq[int], num_prompt_tokens: int, params: SamplingParams
) -> np.ndarray:
    """logits: (V,) float32 -> a penalised copy.

    NOTE: repetition_penalty looks at prompt and output (HF/TRT-LLM), presence/frequency only at
    output tokens (OpenAI semantics).
    """
    logits = logits.astype(np.float32, copy=True)
    vocab = logits.shape[0]
    if params.repetition_penalty != 1.0 and len(context_ids):
        seen = np.unique(np.asarray(context_ids, dtype=np.int64))
        vals = logits[seen]
        logits[seen] = np.where(vals > 0, vals / params.repetition_penalty, vals * params.repetition_penalty)
    if params.presence_penalty or params.frequency_penalty:
        output = np.asarray(context_ids[num_prompt_tokens:], dtype=np.int64)
        counts = np.bincount(output, minlength=vocab)[:vocab].astype(np.float32)  # (V,)
        logits -= params.frequency_penalty * counts + params.presence_penalty * (counts > 0)
    return logits


def final_probs(logits: np.ndarray, params: SamplingParams) -> np.ndarray:
    """The distribution a token is drawn from (V,), float64. Greedy: softmax at temperature 1."""
    z = logits.astype(np.float64)
    if not params.is_greedy:
        z = z / params.temperature
        if 0 < params.top_k < z.shape[0]:
            kth = np.partition(z, -params.top_k)[-params.top_k]
            z = np.where(z >= kth, z, -np.inf)
    probs = np.exp(z - z.max())
    probs /= probs.sum()
    if not params.is_greedy and params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cum = np.cumsum(probs[order])
        # Keep the smallest prefix whose mass reaches top_p: a token stays if the mass before it is short.
        drop = order[(cum - probs[order]) >= params.top_p]
        probs[drop] = 0.0
        probs /= probs.sum()
    return probs


def draw(probs: np.ndarray, rng: np.random.Generator) -> int:
    """Inverse-CDF draw with exactly one uniform from rng."""
    cdf = np.cumsum(probs)
    idx = int(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"))
    return min(idx, probs.shape[0] - 1)


def process_row(
    logits: np.ndarray,
    context_ids: Seq[int],
    num_prompt_tokens: int,
    params: SamplingParams,
    end_id: int | None,
    allowed: np.ndarray | None = None,
) -> np.ndarray:
    """One row of raw logits -> the final distribution for the next token after context_ids.

    allowed: (V,) bool, the grammar's token bitmask (guided decoding); None is unconstrained.
    """
    raw = logits
    if params.has_penalties:
        logits = apply_penalties(logits, context_ids, num_prompt_tokens, params)
    if end_id is not None and len(context_ids) - num_prompt_tokens < params.min_tokens:
        logits = logits.copy()
        logits[end_id] = -np.inf
    if allowed is not None:
        logits = apply_token_mask(logits, allowed, raw)
    return final_probs(logits, params)


def apply_token_mask(logits: np.ndarray, allowed: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Tokens the grammar refuses get -inf. The grammar wins over min_tokens: when the only tokens it allows
    are end-of-sequence ids that min_tokens forbade, they come back (from the raw logits)."""
    masked = np.where(allowed, logits, -np.inf)
    if not np.isfinite(masked).any():
        masked = np.where(allowed, raw, -np.inf)
    return masked


def sample_from_probs(probs: np.ndarray, params: SamplingParams, rng: np.random.Generator) -> tuple[int, float]:
    token = int(np.argmax(probs)) if params.is_greedy else draw(probs, rng)
    return token, float(np.log(probs[token]))


def is_plain_greedy(params: SamplingParams, num_output_tokens: int, end_id: int | None,
                    is_guided: bool = False) -> bool:
    """True when a row's token is just argmax(logits): the batched fast path applies."""
    min_tokens_active = end_id is not None and num_output_tokens < params.min_tokens
    return params.is_greedy and not params.has_penalties and not min_tokens_active and not is_guided


def greedy_batch(logits: np.ndarray, want_log_probs: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """logits (R, V) -> argmax tokens (R,) and optionally their log-softmax (R,)."""
    tokens = np.argmax(logits, axis=-1)  # (R,)
    if not want_log_probs:
        return tokens, None
    z = logits.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)  # (R, 1)
    log_z = np.log(np.exp(z - m).sum(axis=-1)) + m[:, 0]  # (R,)
    return tokens, z[np.arange(len(tokens)), tokens] - log_z


MAX_TOP_LOG_PROBS = 20


def top_log_probs(log_probs: np.ndarray, k: int) -> tuple[list[int], list[float]]:
    """(V,) log-probabilities -> the k most likely ids and their log-probs, most likely first (ties by id)."""
    k = min(k, log_probs.shape[0])
    ids = np.argpartition(-log_probs, k - 1)[:k]
    ids = ids[np.lexsort((ids, -log_probs[ids]))]
    return ids.tolist(), log_probs[ids].astype(np.float64).tolist()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    m = z.max()
    return z - (np.log(np.exp(z - m).sum()) + m)
