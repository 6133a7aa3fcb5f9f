"""The engine's contract with its one caller (the Triton step loop): limits, requests, outputs.

Validation errors name the parameter in backticks, the limit and the given value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .grammar import GrammarState

BATCH_SCHEDULER_POLICIES = ("guaranteed_no_evict", "max_utilization")


@dataclass
class EngineLimits:
    max_batch_size: int = 64
    max_num_tokens: int = 8192
    max_seq_len: int = 2048
    tokens_per_block: int = 32
    max_tokens_in_paged_kv_cache: int | None = None
    kv_cache_free_mem_fraction: float = 0.9
    enable_kv_cache_reuse: bool = True
    batch_scheduler_policy: str = "guaranteed_no_evict"
    enable_chunked_context: bool = True

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_num_tokens", "max_seq_len", "tokens_per_block"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"`{name}` must be >= 1. Given: {value}")
        if self.batch_scheduler_policy not in BATCH_SCHEDULER_POLICIES:
            raise ValueError(
                f"`batch_scheduler_policy` must be one of {list(BATCH_SCHEDULER_POLICIES)}. "
                f"Given: {self.batch_scheduler_policy!r}"
            )
        if not 0.0 < self.kv_cache_free_mem_fraction <= 1.0:
            raise ValueError(
                f"`kv_cache_free_mem_fraction` must be in (0, 1]. Given: {self.kv_cache_free_mem_fraction}"
            )


@dataclass
class SamplingParams:
    temperature: float = 1.0  # 0 means greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int | None = None
    min_tokens: int = 0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def has_penalties(self) -> bool:
        return (self.repetition_penalty != 1.0 or self.presence_penalty != 0.0
                or self.frequency_penalty != 0.0)

    def validate(self) -> None:
        checks = [
            ("temperature", self.temperature >= 0.0, ">= 0", self.temperature),
            ("top_k", self.top_k >= 0, ">= 0", self.top_k),
            ("top_p", 0.0 < self.top_p <= 1.0, "in (0, 1]", self.top_p),
            ("min_tokens", self.min_tokens >= 0, ">= 0", self.min_tokens),
            ("repetition_penalty", self.repetition_penalty > 0.0, "> 0", self.repetition_penalty),
        ]
        for name, ok, limit, value in checks:
            if not ok:
                raise ValueError(f"`{name}` must be {limit}. Given: {value}")


@dataclass
class EngineRequest:
    request_id: str
    prompt_token_ids: list[int]
    max_new_tokens: int
    end_id: int | None = None
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stop_token_ids: list[list[int]] = field(default_factory=list)  # stop sequences
    # External-draft speculation: one step verifies these k tokens, then the request finishes.
    draft_token_ids: list[int] | None = None
    draft_logits: np.ndarray | None = None  # (k, vocab) logits the draft model sampled from
    return_log_probs: bool = False
    # Guided decoding: this request's own grammar state (engine/grammar.py); None is unconstrained.
    grammar: GrammarState | None = None
    num_top_log_probs: int = 0  # per generated token, the k most likely tokens and their log-probs
    return_prompt_log_probs: bool = False  # each prompt token's log-prob given the ones before (echo)


@dataclass
class RequestOutput:
    request_id: str
    new_token_ids: list[int]  # only this step's tokens (streaming)
    new_log_probs: list[float] | None
    finished: bool
    finish_reason: str | None  # "stop" (end_id or stop sequence), "length", "cancelled"
    num_prompt_tokens: int
    num_output_tokens: int  # total so far
    num_draft_tokens: int = 0
    num_accepted_draft_tokens: int = 0
    num_reused_prompt_tokens: int = 0  # served from the prefix cache
    # Per new token, (ids, log-probs) of the num_top_log_probs most likely tokens, most likely first.
    new_top_log_probs: list[tuple[list[int], list[float]]] | None = None
    # Once, on the request's first output: log-probs of prompt tokens 1..n-1, and their top alternatives.
    prompt_log_probs: tuple[list[float], list[tuple[list[int], list[float]]] | None] | None = None
