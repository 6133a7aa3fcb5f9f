"""Engine: the CPU twin of a TensorRT-LLM in-flight-batching executor.

One thread owns an Engine and calls `step()` in a loop; `add_request` and `abort` are called from
that same thread between steps (the Triton adapter queues them). Nothing here is thread-safe.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from .config import LlamaConfig
from .grammar import guide_rows
from .kv_cache import KVCacheManager, num_kv_blocks
from .malloc_tuning import keep_freed_memory_for_reuse
from .model import ForwardBatch, SeqChunk, forward, forward_dense, rope_inv_freq, softmax
from .protocol import EngineLimits, EngineRequest, RequestOutput, SamplingParams
from .sampling import (MAX_TOP_LOG_PROBS, greedy_batch, is_plain_greedy, log_softmax, make_rng, process_row,
                       sample_from_probs, top_log_probs)
from .scheduler import Scheduler, SeqResult, SeqUpdate, StepPlan, StepResult
from .sequence import Sequence
from .speculative import AcceptCounts, verify
from .weights import ModelWeights, load_weights


class Engine:
    def __init__(self, config: LlamaConfig, weights: ModelWeights, limits: EngineLimits | None = None) -> None:
        keep_freed_memory_for_reuse()  # each step's temporaries would otherwise page-fault back in
        self.config = config
        self.limits = limits or EngineLimits()
        self.weights = weights
        self.kv = KVCacheManager(config, num_kv_blocks(config, self.limits), self.limits.tokens_per_block,
                                 self.limits.enable_kv_cache_reuse)
        self.scheduler = Scheduler(self.limits, self.kv)
        self.accept_counts = AcceptCounts()
        self._inv_freq = rope_inv_freq(config)
        self._seqs: dict[str, Sequence] = {}  # unfinished, by request_id
        self._top: dict[int, list] = {}  # seq_id -> this step's top log-probs per sampled token (see _output)
        self._prompt_log_probs: dict[int, tuple] = {}  # seq_id -> prompt log-probs, until the first output
        self._seq_ids = itertools.count()

    @classmethod
    def from_dir(cls, engine_dir: Path, limits: EngineLimits | None = None) -> Engine:
        config, weights = load_weights(Path(engine_dir))
        return cls(config, weights, limits)

    # -- requests -------------------------------------------------------------------------------
    def add_request(self, request: EngineRequest) -> None:
        self._validate(request)
        seq = Sequence(next(self._seq_ids), request, make_rng(request.sampling.seed))
        self._seqs[request.request_id] = seq
        self.scheduler.add(seq)
        if request.return_prompt_log_probs:
            self._prompt_log_probs[seq.seq_id] = self._score_prompt(request)

    def abort(self, request_id: str) -> RequestOutput | None:
        seq = self._seqs.pop(request_id, None)
        if seq is None:
            return None
        self.scheduler.abort(seq)
        return self._output(SeqUpdate(seq, [], [] if seq.return_log_probs else None))

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    # -- the loop -------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        plan = self.scheduler.schedule()
        if plan.is_empty:
            return []
        logits = self._forward(plan)
        result = self._sample_and_verify(plan, logits)
        updates = self.scheduler.update(plan, result)
        self.scheduler.check_invariants()
        outputs = [self._output(u) for u in updates]
        for out in outputs:
            if out.finished:
                del self._seqs[out.request_id]
        return outputs

    def _forward(self, plan: StepPlan) -> np.ndarray:
        chunks = []
        for seq in plan.scheduled:
            start = seq.num_computed_tokens
            n = plan.num_scheduled_tokens[seq.seq_id]
            chunks.append(SeqChunk(seq.tokens_with_drafts(start, start + n), start, seq.block_table,
                                   plan.num_logits.get(seq.seq_id, 0)))
        batch = ForwardBatch.build(chunks, self.kv.block_size)
        return forward(self.weights, self.config, self._inv_freq, self.kv.k_cache, self.kv.v_cache, batch)

    def _sample_and_verify(self, plan: StepPlan, logits: np.ndarray) -> StepResult:
        """logits: (R, V), each sampling sequence's rows in plan order."""
        rows: dict[int, np.ndarray] = {}
        offset = 0
        for seq in plan.scheduled:
            n = plan.num_logits.get(seq.seq_id, 0)
            if n:
                rows[seq.seq_id] = logits[offset:offset + n]
                offset += n
        results: dict[int, SeqResult] = {}
        by_id = {s.seq_id: s for s in plan.scheduled}
        # Fast path: plain greedy single-row sequences share one argmax over the batch.
        fast = [i for i, r in rows.items() if len(r) == 1
                and is_plain_greedy(by_id[i].sampling, by_id[i].num_output_tokens, by_id[i].end_id,
                                    by_id[i].grammar is not None)]
        if fast:
            want_lp = any(by_id[i].return_log_probs for i in fast)
            # Every row plain greedy (the usual decode step): the logits are already that batch, uncopied.
            every = len(fast) == len(rows) == len(logits)
            tokens, log_probs = greedy_batch(logits if every else np.concatenate([rows[i] for i in fast]), want_lp)
            tokens = tokens.tolist()
            for j, i in enumerate(fast):
                lp = [float(log_probs[j])] if by_id[i].return_log_probs else None
                results[i] = SeqResult([tokens[j]], lp)
                if by_id[i].num_top_log_probs:
                    self._top[i] = [top_log_probs(log_softmax(rows[i][0]), by_id[i].num_top_log_probs)]
        for i, r in rows.items():
            if i not in results:
                results[i] = self._sample_seq(by_id[i], r)
        return StepResult(results)

    def _sample_seq(self, seq: Sequence, rows: np.ndarray) -> SeqResult:
        """Sample one token (rows: (1, V)) or verify k drafts (rows: (k+1, V))."""
        drafts = proposed = seq.draft_token_ids
        params = seq.sampling
        context = list(seq.token_ids)
        masks = None
        if seq.grammar is not None:
            masks, num_valid = guide_rows(seq.grammar, drafts)
            drafts, rows = drafts[:num_valid], rows[:num_valid + 1]  # rejected at the first refused draft
        probs = []
        for i in range(len(rows)):
            # Row i follows the committed tokens plus drafts[:i]: penalties and min_tokens see them.
            probs.append(process_row(rows[i], context + drafts[:i], seq.num_prompt_tokens, params, seq.end_id,
                                     None if masks is None else masks[i]))
        if not proposed:
            token, lp = sample_from_probs(probs[0], params, seq.rng)
            self._keep_top_log_probs(seq, probs[:1])
            return SeqResult([token], [lp] if seq.return_log_probs else None)
        draft_probs = None
        if seq.draft_logits is not None and not params.is_greedy:
            # NOTE: draft logits are tempered like the target's; top-k/top-p are not applied to them.
            draft_probs = softmax(np.asarray(seq.draft_logits, dtype=np.float64) / params.temperature, axis=-1)
        if draft_probs is not None:
            draft_probs = draft_probs[:len(drafts)]
        num_accepted, bonus = verify(drafts, np.stack(probs), draft_probs, None if params.is_greedy else seq.rng)
        self.accept_counts.record(num_accepted)
        tokens = drafts[:num_accepted] + [bonus]
        lps = [float(np.log(probs[i][t])) for i, t in enumerate(tokens)] if seq.return_log_probs else None
        self._keep_top_log_probs(seq, probs[:len(tokens)])
        return SeqResult(tokens, lps, len(proposed), num_accepted)

    def _score_prompt(self, request: EngineRequest) -> tuple:
        """Prompt log-probs for echo. NOTE: one dense forward of the prompt outside the paged cache: scoring is
        rare, and it keeps prompt logits out of the scheduler's plan."""
        prompt = request.prompt_token_ids
        logits = forward_dense(self.weights, self.config, prompt)[:-1].astype(np.float64)  # (T-1, V)
        m = logits.max(axis=-1, keepdims=True)  # (T-1, 1)
        log_probs = logits - (np.log(np.exp(logits - m).sum(axis=-1, keepdims=True)) + m)  # (T-1, V)
        lps = log_probs[np.arange(len(prompt) - 1), prompt[1:]].tolist()
        k = request.num_top_log_probs
        return lps, [top_log_probs(row, k) for row in log_probs] if k else None

    def _keep_top_log_probs(self, seq: Sequence, probs: list[np.ndarray]) -> None:
        """The top alternatives of each sampled token, from the distribution it was drawn from."""
        if seq.num_top_log_probs:
            with np.errstate(divide="ignore"):
                self._top[seq.seq_id] = [top_log_probs(np.log(p), seq.num_top_log_probs) for p in probs]

    def _output(self, u: SeqUpdate) -> RequestOutput:
        seq = u.seq
        top = self._top.pop(seq.seq_id, None)
        return RequestOutput(
            request_id=seq.request_id,
            new_token_ids=u.new_token_ids,
            new_log_probs=u.new_log_probs,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            num_prompt_tokens=seq.num_prompt_tokens,
            num_output_tokens=seq.num_output_tokens,
            num_draft_tokens=seq.num_draft_tokens,
            num_accepted_draft_tokens=seq.num_accepted_draft_tokens,
            num_reused_prompt_tokens=seq.num_cached_tokens or 0,
            # Kept tokens are a prefix of the sampled ones (commit stops at end_id / a stop sequence).
            new_top_log_probs=top[:len(u.new_token_ids)] if top is not None else None,
            prompt_log_probs=self._prompt_log_probs.pop(seq.seq_id, None),
        )

    # -- validation and reporting ---------------------------------------------------------------
    def _validate(self, r: EngineRequest) -> None:
        lim, vocab = self.limits, self.config.vocab_size
        if r.request_id in self._seqs:
            raise ValueError(f"`request_id` {r.request_id!r} is already active")
        if not r.prompt_token_ids:
            raise ValueError("`prompt_token_ids` must not be empty")
        if r.max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be >= 1. Given: {r.max_new_tokens}")
        bad = [t for t in r.prompt_token_ids if not 0 <= t < vocab]
        if bad:
            raise ValueError(f"`prompt_token_ids` must be in [0, {vocab}). Given: {bad[:5]}")
        total = len(r.prompt_token_ids) + r.max_new_tokens
        if total > lim.max_seq_len:
            raise ValueError(
                f"prompt + `max_new_tokens` must be <= max_seq_len={lim.max_seq_len}. "
                f"Given: {len(r.prompt_token_ids)} + {r.max_new_tokens} = {total}")
        drafts = r.draft_token_ids or []
        if [t for t in drafts if not 0 <= t < vocab]:
            raise ValueError(f"`draft_token_ids` must be in [0, {vocab}). Given: {drafts}")
        # Drafts are verified in one forward with the last token, and the bonus token needs a slot too.
        max_drafts = min(lim.max_num_tokens - 1, lim.max_seq_len - len(r.prompt_token_ids) - 1)
        if len(drafts) > max_drafts:
            raise ValueError(f"`draft_token_ids` must have <= {max_drafts} tokens here. Given: {len(drafts)}")
        if r.draft_logits is not None and np.shape(r.draft_logits) != (len(drafts), vocab):
            raise ValueError(f"`draft_logits` must have shape ({len(drafts)}, {vocab}). "
                             f"Given: {np.shape(r.draft_logits)}")
        if not lim.enable_chunked_context and len(r.prompt_token_ids) + len(drafts) > lim.max_num_tokens:
            raise ValueError(f"without chunked context the prompt must be <= max_num_tokens={lim.max_num_tokens}. "
                             f"Given: {len(r.prompt_token_ids)}")
        if not 0 <= r.num_top_log_probs <= MAX_TOP_LOG_PROBS:
            raise ValueError(f"`num_top_log_probs` must be in 0..{MAX_TOP_LOG_PROBS}. Given: {r.num_top_log_probs}")
        if r.end_id is not None and not 0 <= r.end_id < vocab:
            raise ValueError(f"`end_id` must be in [0, {vocab}). Given: {r.end_id}")
        r.sampling.validate()

    def stats(self) -> dict:
        pool = self.kv.pool
        return {
            "num_active_requests": len(self._seqs),
            "num_waiting_requests": len(self.scheduler.waiting),
            "num_running_requests": len(self.scheduler.running),
            "kv_blocks_total": pool.num_blocks,
            "kv_blocks_used": pool.num_used_blocks,
            "kv_blocks_free": pool.num_free_blocks,
            "kv_blocks_reused_total": pool.num_reused_blocks_total,
            "prefix_cache_queries": self.kv.prefix_cache_queries,
            "prefix_cache_hits": self.kv.prefix_cache_hits,
            "tokens_per_block": self.kv.block_size,
            "accept_counts": list(self.accept_counts.counts),
        }

    def generate(self, prompts: list[list[int]], max_new_tokens: int,
                 sampling: SamplingParams | None = None) -> list[list[int]]:
        """Run prompts to completion (no end_id; greedy unless `sampling` says otherwise).

        A convenience for tests and benchmarks: it steps until *every* request is done.
        """
        ids = [f"generate-{next(self._seq_ids)}" for _ in prompts]
        for rid, prompt in zip(ids, prompts, strict=True):
            self.add_request(EngineRequest(rid, list(prompt), max_new_tokens,
                                           sampling=sampling or SamplingParams(temperature=0.0)))
        outputs: dict[str, list[int]] = {rid: [] for rid in ids}
        while self.has_unfinished_requests():
            for out in self.step():
                if out.request_id in outputs:
                    outputs[out.request_id].extend(out.new_token_ids)
        return [outputs[rid] for rid in ids]
