"""Draft-target speculation orchestrated by the frontend, one round at a time, so it streams and batches.

A round: the draft engine proposes k tokens for prompt + generated-so-far, then the target engine verifies
them in one step (`draft_input_ids`, request_output_len = k + 1) and returns the accepted prefix plus one
token of its own. Greedy verification is exact match, so greedy output equals decoding without a draft.
Every round is a new engine request on the same replica, whose prefix cache makes the growing prefix cheap.

End-of-sequence is handled here, not in the engine: rounds are sent without `end_id` and the frontend cuts
at the first end id, exactly as the engine would (the end id is dropped, a stop-word id is kept), so usage
counts match the plain path.

`AdaptiveSpeculation` turns speculation off per model when the measured acceptance rate over a window
falls below a threshold or the running batch is large (where verification compute is no longer free), and
back on when that recovers; while off for low acceptance it still speculates every `probe_every`-th
round, so it can see acceptance recover.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable

from trtpipe.serve.engine_client.calls import (DRAFT_COUNTERS, OUTPUT_IDS, OUTPUT_LOG_PROBS, EngineCall, Final,
                                               TokenDelta)

ON, OFF_ACCEPTANCE, OFF_BATCH = "on", "off_acceptance", "off_batch"
PLAIN_CHUNK_TOKENS = 16  # while off: tokens per plain round before deciding again


@dataclass(frozen=True)
class SpeculationConfig:
    threshold: float = 0.6
    window_rounds: int = 64
    min_rounds: int = 8
    max_batch: int = 32  # off above this many running requests of the model; back on at or below half
    probe_every: int = 16


class LocalWindow:
    """This process's last `size` speculation rounds of one model: (rounds, drafted, accepted) over them.
    shared_limits.SharedWindow is the same window shared by every API-server process."""

    def __init__(self, size: int):
        self._rounds: deque[tuple[int, int]] = deque(maxlen=size)
        self._drafted = self._accepted = 0

    def record(self, num_draft: int, num_accepted: int) -> None:
        if len(self._rounds) == self._rounds.maxlen:
            d, a = self._rounds[0]
            self._drafted, self._accepted = self._drafted - d, self._accepted - a
        self._rounds.append((num_draft, num_accepted))
        self._drafted, self._accepted = self._drafted + num_draft, self._accepted + num_accepted

    def totals(self) -> tuple[int, int, int]:
        return len(self._rounds), self._drafted, self._accepted


class AdaptiveSpeculation:
    """Per-model on/off state from the acceptance rate over the last `window_rounds` rounds and the batch.
    `window`: where the rounds are kept (LocalWindow by default; with several API servers one shared window,
    so that every process sees the same acceptance and turns speculation off and on together)."""

    def __init__(self, config: SpeculationConfig = SpeculationConfig(), window=None):
        self.config = config
        self._window = window if window is not None else LocalWindow(config.window_rounds)
        self._low_acceptance = False
        self._batch_large = False
        self._decisions_while_off = 0

    @property
    def acceptance_rate(self) -> float | None:
        _, drafted, accepted = self._window.totals()
        return accepted / drafted if drafted else None

    @property
    def state(self) -> str:
        if self._batch_large:
            return OFF_BATCH
        self._update_acceptance()
        return OFF_ACCEPTANCE if self._low_acceptance else ON

    def record(self, num_draft: int, num_accepted: int) -> None:
        self._window.record(num_draft, num_accepted)
        self._update_acceptance()

    def _update_acceptance(self) -> None:
        rounds, drafted, accepted = self._window.totals()
        if rounds >= self.config.min_rounds and drafted:
            self._low_acceptance = accepted / drafted < self.config.threshold

    def use_draft(self, num_running: int) -> bool:
        c = self.config
        if num_running > c.max_batch:
            self._batch_large = True
        elif num_running <= c.max_batch // 2:
            self._batch_large = False
        if self._batch_large:
            return False
        self._update_acceptance()  # another process may have recorded rounds since
        if self._low_acceptance:
            self._decisions_while_off += 1
            return self._decisions_while_off % c.probe_every == 0
        return True

    def gauges(self, model: str):
        labels = {"model": model}
        yield "trtpipe_spec_decode_enabled", "1 if speculation is on for the model", labels, float(self.state == ON)
        rate = self.acceptance_rate
        yield "trtpipe_spec_decode_acceptance_rate", "Accepted / drafted tokens over the recent window", labels, \
            float("nan") if rate is None else rate
        for s in (ON, OFF_ACCEPTANCE, OFF_BATCH):
            yield "trtpipe_spec_decode_state", "1 for the model's current speculation state", \
                {"model": model, "state": s}, float(self.state == s)


StreamFn = Callable[[str, EngineCall, tuple[str, ...]], AsyncIterator[TokenDelta | Final]]


class Speculator:
    """Runs one choice as speculation rounds; yields the same TokenDelta/Final events as a plain stream."""

    def __init__(self, stream: StreamFn, target_model: str, draft_model: str, max_draft_len: int,
                 controller: AdaptiveSpeculation, num_running: Callable[[], int], on_round=lambda d, a: None):
        self.stream, self.target_model, self.draft_model = stream, target_model, draft_model
        self.max_draft_len, self.controller, self.num_running = max_draft_len, controller, num_running
        self.on_round = on_round

    async def generate(self, call: EngineCall) -> AsyncIterator[TokenDelta | Final]:
        stop_ids = {s[0] for s in call.stop_token_ids if len(s) == 1}
        base = replace(call, end_id=None, stop_token_ids=[], draft_input_ids=None)
        out_names = (OUTPUT_IDS, OUTPUT_LOG_PROBS) if call.return_log_probs else (OUTPUT_IDS,)
        generated: list[int] = []
        num_draft = num_accepted = rounds = 0
        guided = call.guide_type is not None
        while len(generated) < call.max_new_tokens:
            remaining = call.max_new_tokens - len(generated)
            seed = None if call.seed is None else (call.seed * 1_000_003 + rounds) % 2**63
            rounds += 1
            if guided:  # the engine's grammar resumes after the tokens generated so far
                base = replace(base, guide_prefix_len=len(generated))
            base = replace(base, input_ids=call.input_ids + generated, seed=seed)
            k = min(self.max_draft_len, remaining - 1)
            if k > 0 and self.controller.use_draft(self.num_running()):
                new, lps, drafted, accepted = await self._draft_round(base, k, out_names)
                asked = accepted + 1
                num_draft, num_accepted = num_draft + drafted, num_accepted + accepted
            else:
                asked = min(remaining, PLAIN_CHUNK_TOKENS)
                new, lps = await self._collect(self.target_model, replace(base, max_new_tokens=asked), out_names)
            # A round that returns fewer tokens than it owed ended early in the engine: its grammar is complete.
            finished = guided and len(new[:remaining]) < asked
            new, ended = _cut_at_end(new[:remaining], call.end_id, stop_ids)
            if new:
                generated.extend(new)
                yield TokenDelta(new, lps[:len(new)] if call.return_log_probs else None)
            if finished or ended:
                break
        yield Final(len(generated), num_draft, num_accepted)

    async def _draft_round(self, base: EngineCall, k: int, out_names: tuple[str, ...]
                           ) -> tuple[list[int], list[float], int, int]:
        """The draft proposes k tokens, the target verifies them in one step.
        -> (tokens, their log-probs, drafted, accepted)."""
        draft, _ = await self._collect(self.draft_model, replace(base, max_new_tokens=k, return_log_probs=False),
                                       (OUTPUT_IDS,))
        verify = replace(base, max_new_tokens=len(draft) + 1, draft_input_ids=draft or None)
        new: list[int] = []
        lps: list[float] = []
        accepted = 0
        async for ev in self.stream(self.target_model, verify, out_names + DRAFT_COUNTERS):
            if type(ev) is TokenDelta:
                new.extend(ev.token_ids)
                lps.extend(ev.log_probs or ())
            else:
                accepted = ev.num_accepted_draft_tokens if draft else 0
        self.controller.record(len(draft), accepted)
        self.on_round(len(draft), accepted)
        return new, lps, len(draft), accepted

    async def _collect(self, model: str, call: EngineCall, out_names: tuple[str, ...]) -> tuple[list[int], list[float]]:
        ids: list[int] = []
        lps: list[float] = []
        async for ev in self.stream(model, call, out_names):
            if type(ev) is TokenDelta:
                ids.extend(ev.token_ids)
                lps.extend(ev.log_probs or ())
        return ids, lps


def _cut_at_end(new: list[int], end_id: int | None, stop_ids: set[int]) -> tuple[list[int], bool]:
    """A round's tokens up to the sequence's end, as the engine would have ended it -> (tokens, ended)."""
    for i, t in enumerate(new):
        if t == end_id:  # dropped, as the engine drops end_id
            return new[:i], True
        if t in stop_ids:  # kept, as the engine keeps a matched stop word
            return new[:i + 1], True
    return new, False
