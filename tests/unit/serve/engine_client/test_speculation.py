"""Speculation rounds against fake engines: exactness, end-of-sequence, counts, and the adaptive switch."""

from __future__ import annotations

import pytest

from trtpipe.serve.engine_client import EngineCall, Final, TokenDelta
from trtpipe.serve.engine_client.speculation import (OFF_ACCEPTANCE, OFF_BATCH, ON, PLAIN_CHUNK_TOKENS,
                                                     AdaptiveSpeculation, SpeculationConfig, Speculator)


def target_next(prefix: list[int]) -> int:
    return (sum(prefix) * 31 + len(prefix)) % 50 + 10


class FakeEngines:
    """'target' decodes greedily with target_next and verifies drafts exactly as TensorRT-LLM does;
    'draft' proposes with `draft_next`."""

    def __init__(self, draft_next):
        self.draft_next = draft_next
        self.calls: list[tuple[str, EngineCall]] = []

    async def stream(self, model, call: EngineCall, outputs):
        self.calls.append((model, call))
        assert call.end_id is None  # end of sequence is the frontend's job during speculation
        prefix, out = list(call.input_ids), []
        if model == "draft":
            for _ in range(call.max_new_tokens):
                out.append(self.draft_next(prefix + out))
            yield TokenDelta(out, None)
            yield Final(len(out))
            return
        drafts = call.draft_input_ids or []
        accepted = 0
        for d in drafts:
            if target_next(prefix + out) != d:
                break
            out.append(d)
            accepted += 1
        while len(out) < (accepted + 1 if drafts else call.max_new_tokens):
            out.append(target_next(prefix + out))
        for t in out:  # one token per response, as the engine streams
            yield TokenDelta([t], [-0.5] if call.return_log_probs else None)
        yield Final(len(out), len(drafts), accepted)


async def run(spec: Speculator, call: EngineCall) -> tuple[list[int], Final]:
    tokens, final = [], None
    async for ev in spec.generate(call):
        if isinstance(ev, TokenDelta):
            tokens += ev.token_ids
        else:
            final = ev
    return tokens, final


def plain_greedy(prompt: list[int], n: int) -> list[int]:
    out = []
    for _ in range(n):
        out.append(target_next(prompt + out))
    return out


def speculator(engines: FakeEngines, controller=None, k: int = 4, running: int = 1) -> Speculator:
    return Speculator(engines.stream, "target", "draft", k, controller or AdaptiveSpeculation(), lambda: running)


@pytest.mark.parametrize("draft_next", [target_next, lambda p: 7, lambda p: target_next(p) if len(p) % 3 else 9],
                         ids=["perfect-draft", "useless-draft", "sometimes-right"])
async def test_greedy_output_equals_plain_decoding_whatever_the_draft(draft_next):
    prompt = [1, 2, 3]
    tokens, final = await run(speculator(FakeEngines(draft_next)), EngineCall(prompt, 23, temperature=0.0))
    assert tokens == plain_greedy(prompt, 23)
    assert final.num_output_tokens == 23


async def test_a_perfect_draft_is_fully_accepted_and_saves_target_calls():
    engines = FakeEngines(target_next)
    tokens, final = await run(speculator(engines), EngineCall([5], 20, temperature=0.0))
    assert final.num_accepted_draft_tokens == final.num_draft_tokens > 0
    assert sum(1 for m, _ in engines.calls if m == "target") == 4  # 5 tokens per round
    assert all(len(c.input_ids) + c.max_new_tokens <= 1 + 20 for _, c in engines.calls)


async def test_end_id_is_dropped_and_a_stop_word_id_kept_as_the_engine_does():
    prompt = [4]
    plain = plain_greedy(prompt, 30)
    end = plain[6]
    tokens, final = await run(speculator(FakeEngines(target_next)),
                              EngineCall(prompt, 30, end_id=end, temperature=0.0))
    assert tokens == plain[:plain.index(end)] and final.num_output_tokens == len(tokens)
    stop = plain[4]
    tokens, _ = await run(speculator(FakeEngines(target_next)),
                          EngineCall(prompt, 30, end_id=999, stop_token_ids=[[stop]], temperature=0.0))
    assert tokens == plain[:plain.index(stop) + 1]


async def test_logprobs_follow_the_tokens():
    got = []
    async for ev in speculator(FakeEngines(target_next)).generate(EngineCall([1], 9, temperature=0.0,
                                                                             return_log_probs=True)):
        if isinstance(ev, TokenDelta):
            assert len(ev.log_probs) == len(ev.token_ids)
            got += ev.token_ids
    assert len(got) == 9


async def test_while_off_it_decodes_plain_chunks():
    engines = FakeEngines(target_next)
    controller = AdaptiveSpeculation(SpeculationConfig(max_batch=4))
    tokens, final = await run(speculator(engines, controller, running=10), EngineCall([1], 40, temperature=0.0))
    assert tokens == plain_greedy([1], 40) and final.num_draft_tokens == 0
    assert [c.max_new_tokens for m, c in engines.calls] == [PLAIN_CHUNK_TOKENS, PLAIN_CHUNK_TOKENS, 8]
    assert controller.state == OFF_BATCH


def test_low_acceptance_turns_speculation_off_then_probes_and_recovers():
    c = AdaptiveSpeculation(SpeculationConfig(threshold=0.6, window_rounds=10, min_rounds=4, probe_every=5))
    assert c.use_draft(1) and c.state == ON
    for _ in range(3):
        c.record(4, 1)
    assert c.state == ON  # not enough rounds to judge
    c.record(4, 1)
    assert c.state == OFF_ACCEPTANCE and c.acceptance_rate == 0.25
    decisions = [c.use_draft(1) for _ in range(10)]
    assert decisions == [False] * 4 + [True] + [False] * 4 + [True]  # a probe every 5th round
    for _ in range(10):
        c.record(4, 4)  # the draft got good: the window forgets the old rounds
    assert c.state == ON and c.acceptance_rate == 1.0
    assert c.use_draft(1)


def test_a_large_batch_turns_it_off_with_hysteresis():
    c = AdaptiveSpeculation(SpeculationConfig(max_batch=8))
    assert c.use_draft(8)
    assert not c.use_draft(9) and c.state == OFF_BATCH
    assert not c.use_draft(6)  # still above half the bound
    assert c.use_draft(4) and c.state == ON


def test_gauges_report_the_state():
    c = AdaptiveSpeculation()
    gauges = {(name, tuple(labels.items())): v for name, _, labels, v in c.gauges("m")}
    assert gauges[("trtpipe_spec_decode_enabled", (("model", "m"),))] == 1.0
    assert gauges[("trtpipe_spec_decode_state", (("model", "m"), ("state", "on")))] == 1.0


class GuidedFakeEngines(FakeEngines):
    """As FakeEngines, but the target's grammar is complete after `length` generated tokens: the engine then
    ends the request early, as a guided request ends when its grammar is complete."""

    def __init__(self, draft_next, length: int):
        super().__init__(draft_next)
        self.length = length

    async def stream(self, model, call: EngineCall, outputs):
        room = self.length - call.guide_prefix_len
        async for ev in super().stream(model, call, outputs):
            if model == "target" and type(ev) is TokenDelta:
                ev = TokenDelta(ev.token_ids[:max(room, 0)], None)
                room -= len(ev.token_ids)
                if not ev.token_ids:
                    continue
            yield ev


@pytest.mark.parametrize("draft_next", [target_next, lambda p: 7], ids=["perfect-draft", "useless-draft"])
async def test_guided_rounds_resume_the_grammar_where_the_output_is_and_stop_when_it_is_complete(draft_next):
    prompt = [3, 1]
    engines = GuidedFakeEngines(draft_next, length=11)
    call = EngineCall(prompt, 40, temperature=0.0, end_id=999, guide_type="json_schema", guide="{}")
    tokens, final = await run(speculator(engines), call)
    assert tokens == plain_greedy(prompt, 11) and final.num_output_tokens == 11
    assert all(c.guide_prefix_len == len(c.input_ids) - len(prompt) for _, c in engines.calls)
    assert all(c.guide_type == "json_schema" for _, c in engines.calls)
