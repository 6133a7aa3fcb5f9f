"""Guided decoding in the reference engine: the bitmask in the sampler, per-sequence grammar state, drafts.

The model is the synthetic tiny-llama (random weights, its real byte-level BPE tokenizer), so any output
that parses is the grammar's doing, not the model's.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from trtpipe.engine import Engine, EngineRequest, SamplingParams
from trtpipe.engine.grammar import GrammarCompiler, GrammarError

from .tiny import greedy, limits, run_to_completion, tokens_of

PERSON = {"type": "object", "additionalProperties": False, "required": ["name", "age", "tags"],
          "properties": {"name": {"type": "string", "maxLength": 6},
                         "age": {"type": "integer", "minimum": 0, "maximum": 120},
                         "tags": {"type": "array", "maxItems": 2, "items": {"enum": ["a", "b"]}}}}
PROMPT = [0, 17, 250, 31, 99, 7]


def guided(rid, grammars, guide_type, guide, n=160, **kw):
    kw.setdefault("sampling", SamplingParams(temperature=1.0, seed=0))
    kw.setdefault("end_id", 4)
    return EngineRequest(rid, PROMPT, n, grammar=grammars.compile(guide_type, guide).new_state(), **kw)


def text_of(tokenizer, outs) -> str:
    return tokenizer.decode(tokens_of(outs))


def test_a_schema_is_compiled_once_and_the_cache_is_lru(synthetic_dir):
    d = synthetic_dir
    grammars = GrammarCompiler.from_tokenizer_dir(d / "hf", 1024)
    grammars.max_cached = 2
    a = grammars.compile("json_schema", json.dumps(PERSON))
    assert grammars.compile("json_schema", json.dumps(PERSON)) is a
    grammars.compile("regex", "x+")
    grammars.compile("regex", "y+")  # evicts the schema, the least recently used
    assert grammars.num_compiled == 3
    assert grammars.compile("json_schema", json.dumps(PERSON)) is not a
    assert grammars.num_compiled == 4


@pytest.mark.parametrize("guide_type,guide,says", [
    ("regex", "[a-z", "unclosed character class"),
    ("json_schema", '{"type": "nope"}', "nope"),
    ("json_schema", "{not json", "not valid"),
    ("ebnf_grammar", "root ::= missing", "ebnf_grammar"),
    ("xml", "<a/>", "must be one of"),
])
def test_a_guide_that_cannot_compile_is_refused_with_the_reason(grammars, guide_type, guide, says):
    with pytest.raises(GrammarError, match=re.escape(says)):
        grammars.compile(guide_type, guide)


def test_sampled_json_schema_outputs_parse_and_validate_for_many_seeds(synthetic_engine, grammars,
                                                                      synthetic_tokenizer):
    reqs = [guided(f"s{seed}", grammars, "json_schema", json.dumps(PERSON),
                   sampling=SamplingParams(temperature=1.0, seed=seed)) for seed in range(24)]
    outs = run_to_completion(synthetic_engine, reqs)
    for r in reqs:
        assert outs[r.request_id][-1].finish_reason == "stop"
        jsonschema.validate(json.loads(text_of(synthetic_tokenizer, outs[r.request_id])), PERSON)


def test_guided_and_unconstrained_requests_batch_without_changing_each_other(synthetic_dir, grammars):
    d = synthetic_dir
    plain = [EngineRequest(f"p{i}", PROMPT[: i + 2], 24, sampling=greedy()) for i in range(4)]

    def fresh_guided():
        return [guided(f"g{i}", grammars, "json_schema", json.dumps(PERSON), sampling=greedy()) for i in range(3)]

    solo = {r.request_id: tokens_of(run_to_completion(Engine.from_dir(d / "engine", limits(max_seq_len=512)),
                                                      [r])[r.request_id]) for r in plain + fresh_guided()[:1]}
    mixed = run_to_completion(Engine.from_dir(d / "engine", limits(max_seq_len=512)), plain + fresh_guided())
    for r in plain:
        assert tokens_of(mixed[r.request_id]) == solo[r.request_id]
    assert tokens_of(mixed["g0"]) == tokens_of(mixed["g1"]) == solo["g0"]


@pytest.mark.parametrize("guide_type,guide,check", [
    ("regex", r"[a-c]{2,5}-[0-9]{3}", lambda t: re.fullmatch(r"[a-c]{2,5}-[0-9]{3}", t)),
    ("ebnf_grammar", 'root ::= "yes" | "no" | "maybe"', lambda t: t in ("yes", "no", "maybe")),
    ("json", "", lambda t: isinstance(json.loads(t), (dict, list))),
])
def test_regex_ebnf_and_any_json_outputs_match_for_many_seeds(synthetic_engine, grammars, synthetic_tokenizer,
                                                              guide_type, guide,
                                                              check):
    reqs = [guided(f"s{seed}", grammars, guide_type, guide, n=300,
                   sampling=SamplingParams(temperature=1.0, seed=seed)) for seed in range(8)]
    outs = run_to_completion(synthetic_engine, reqs)
    for r in reqs:
        text = text_of(synthetic_tokenizer, outs[r.request_id])
        if guide_type == "json" and outs[r.request_id][-1].finish_reason == "length":
            continue  # any JSON has no length bound; a cut-off value is `length`, as in OpenAI
        assert outs[r.request_id][-1].finish_reason == "stop", text
        assert check(text), text


def test_the_grammar_ends_the_sequence_as_stop_without_an_end_id(synthetic_engine, grammars, synthetic_tokenizer):
    req = guided("a", grammars, "regex", "done", end_id=None)
    outs = run_to_completion(synthetic_engine, [req])["a"]
    assert text_of(synthetic_tokenizer, outs) == "done" and outs[-1].finish_reason == "stop"


def test_the_grammar_wins_over_min_tokens_when_it_is_complete(synthetic_engine, grammars, synthetic_tokenizer):
    req = guided("a", grammars, "regex", "ok", sampling=SamplingParams(temperature=1.0, seed=3, min_tokens=10))
    outs = run_to_completion(synthetic_engine, [req])["a"]
    assert text_of(synthetic_tokenizer, outs) == "ok" and outs[-1].finish_reason == "stop"


def test_guide_rows_cut_drafts_at_the_first_refused_token_and_after_completion(grammars, synthetic_tokenizer):
    from trtpipe.engine.grammar import guide_rows

    ids = lambda s: synthetic_tokenizer.encode(s).ids  # noqa: E731
    state = grammars.compile("json_schema", json.dumps(PERSON)).new_state()
    first = int(state.allowed().nonzero()[0][0])
    probe = state.fork()
    assert probe.accept(first)
    after = probe.allowed()
    refused, valid = int((~after).nonzero()[0][0]), int(after.nonzero()[0][0])
    masks, num_valid = guide_rows(state, [first, refused, valid])
    assert num_valid == 1 and len(masks) == 2 and (masks[1] == after).all()
    done = grammars.compile("regex", "ab").new_state()
    masks, num_valid = guide_rows(done, ids("ab") + ids("c"))
    assert num_valid == len(ids("ab"))
    assert set(masks[-1].nonzero()[0]) == {4, 1}  # complete: only end-of-sequence is left
    assert done.allowed()[ids("a")[0]]  # the state itself did not move


def test_drafts_are_accepted_up_to_the_first_token_the_grammar_refuses(synthetic_dir, grammars, synthetic_tokenizer):
    d = synthetic_dir
    schema = json.dumps(PERSON)
    make = lambda: Engine.from_dir(d / "engine", limits(max_seq_len=512))  # noqa: E731
    reference = tokens_of(run_to_completion(make(), [guided("ref", grammars, "json_schema", schema,
                                                            sampling=greedy())])["ref"])
    refused = synthetic_tokenizer.encode("]").ids[0]  # never valid after a prefix of an object
    drafts = reference[:3] + [refused] + reference[4:6]
    out = run_to_completion(make(), [guided("v", grammars, "json_schema", schema, n=len(drafts) + 1,
                                            sampling=greedy(), draft_token_ids=drafts)])["v"][-1]
    # Greedy verification against the masked target: three drafts kept, the target's own 4th token instead of "]".
    assert out.new_token_ids == reference[:4]
    assert (out.num_draft_tokens, out.num_accepted_draft_tokens) == (6, 3)


def test_a_draft_refused_at_once_still_yields_the_targets_guided_token(synthetic_dir, grammars, synthetic_tokenizer):
    d = synthetic_dir
    make = lambda: Engine.from_dir(d / "engine", limits(max_seq_len=512))  # noqa: E731
    reference = tokens_of(run_to_completion(make(), [guided("ref", grammars, "regex", "[0-9]{4}",
                                                            sampling=greedy())])["ref"])
    letter = synthetic_tokenizer.encode("x").ids[0]
    out = run_to_completion(make(), [guided("v", grammars, "regex", "[0-9]{4}", n=3, sampling=greedy(),
                                            draft_token_ids=[letter, letter])])["v"][-1]
    assert out.new_token_ids == reference[:1] and out.num_accepted_draft_tokens == 0


def test_aborting_a_guided_request_leaves_the_others_running(synthetic_engine, grammars):
    engine = synthetic_engine
    reqs = [guided(f"g{i}", grammars, "json_schema", json.dumps(PERSON),
                   sampling=SamplingParams(temperature=1.0, seed=i)) for i in range(3)]
    for r in reqs:
        engine.add_request(r)
    engine.step()
    engine.step()
    cancelled = engine.abort("g1")
    assert cancelled.finished and cancelled.finish_reason == "cancelled"
    outs = run_to_completion(engine, [])
    for rid in ("g0", "g2"):
        assert outs[rid][-1].finish_reason == "stop"
    assert "g1" not in outs or not outs["g1"]


def test_a_structural_tag_leaves_text_free_and_constrains_inside_the_tag(grammars, synthetic_tokenizer):
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
              "additionalProperties": False}
    tag = {"type": "structural_tag", "triggers": ["<fn"],
           "structures": [{"begin": "<fn>", "schema": schema, "end": "</fn>"}]}
    compiled = grammars.compile("structural_tag", json.dumps(tag))

    def num_accepted(text: str) -> int:
        state, ids = compiled.new_state(), synthetic_tokenizer.encode(text).ids
        for i, token in enumerate(ids):
            if not state.allowed()[token] or not state.accept(token):
                return i
        return len(ids)

    ok = 'any text <fn>{"x":12}</fn> and more'
    assert num_accepted(ok) == len(synthetic_tokenizer.encode(ok).ids)
    bad = 'text <fn>{"y":1}'
    assert synthetic_tokenizer.decode(synthetic_tokenizer.encode(bad).ids[:num_accepted(bad)]) == 'text <fn>{"'


class _BrokenGrammar:
    """A matcher in an error state: it allows anything and then refuses it."""

    eos_token_ids = (4,)

    def allowed(self):
        import numpy as np
        return np.ones(1024, dtype=bool)

    def accept(self, token_id):
        return False

    is_stopped = False


def test_a_broken_grammar_ends_its_own_sequence_and_not_the_batch(synthetic_engine):
    broken = EngineRequest("b", PROMPT, 20, sampling=greedy(), grammar=_BrokenGrammar())
    plain = EngineRequest("p", PROMPT, 20, sampling=greedy())
    outs = run_to_completion(synthetic_engine, [broken, plain])
    assert len(tokens_of(outs["b"])) == 1 and outs["b"][-1].finish_reason == "stop"
    assert len(tokens_of(outs["p"])) == 20


def _accepts(grammars, tokenizer, schema: dict, text: str) -> bool:
    state, ids = grammars.compile("json_schema", json.dumps(schema)).new_state(), tokenizer.encode(text).ids
    for token in ids:
        if not state.allowed()[token] or not state.accept(token):
            return False
    return True


@pytest.mark.parametrize("schema, closed", [
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, True),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"], "additionalProperties": True},
     False),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
      "additionalProperties": {"type": "integer"}}, False),
    ({"type": "object", "title": "any object"}, False),  # bare: any object, as in xgrammar
])
def test_an_object_is_closed_unless_its_schema_says_otherwise_as_xgrammar_compiles_it(
        grammars, synthetic_tokenizer, schema, closed):
    assert _accepts(grammars, synthetic_tokenizer, schema, '{"a":1}' if "properties" in schema else '{"z":1}')
    assert _accepts(grammars, synthetic_tokenizer, schema, '{"a":1,"b":2') is not closed


def test_nested_objects_and_definitions_are_closed_too():
    from trtpipe.engine.grammar import close_objects

    schema = {"type": "object", "properties": {"inner": {"$ref": "#/$defs/P"},
                                               "list": {"type": "array", "items": {"properties": {"x": {}}}}},
              "$defs": {"P": {"type": "object", "properties": {"y": {"type": "string"}}}}}
    closed = close_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["$defs"]["P"]["additionalProperties"] is False
    assert closed["properties"]["list"]["items"]["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["inner"]  # a $ref is its target's business
    assert schema == {"type": "object", "properties": {"inner": {"$ref": "#/$defs/P"},
                                                       "list": {"type": "array", "items": {"properties": {"x": {}}}}},
                      "$defs": {"P": {"type": "object", "properties": {"y": {"type": "string"}}}}}  # not mutated
