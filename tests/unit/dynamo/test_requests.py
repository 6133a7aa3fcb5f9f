"""Dynamo's token request -> EngineRequest, and engine outputs -> Dynamo's chunks (no Dynamo needed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from trtpipe.config import load_config

from trtpipe.dynamo.requests import RequestRefused, engine_request, response_chunk
from trtpipe.engine import RequestOutput
from trtpipe.spec import ServingSpec

BASE = ServingSpec.from_config(load_config("tiny-llama"))
SPEC = replace(BASE, max_input_len=100, max_seq_len=128, default_max_tokens=16, max_max_tokens=64, max_top_log_probs=5)


def request(**kw) -> dict:
    base = {"token_ids": [5, 6, 7], "eos_token_ids": [4, 1], "stop_conditions": {}, "sampling_options": {},
            "output_options": {}}
    for key, value in kw.items():
        if isinstance(value, dict):
            base[key] = {**base.get(key, {}), **value}
        else:
            base[key] = value
    return base


def test_the_first_end_of_sequence_id_is_end_id_and_the_others_are_hidden_one_token_stops():
    er, shape = engine_request("r1", request(stop_conditions={"stop_token_ids_hidden": [9], "max_tokens": 8,
                                                                "min_tokens": 2},
                                             sampling_options={"temperature": 0.0, "top_k": -1, "seed": 3}), SPEC)
    assert (er.request_id, er.prompt_token_ids, er.max_new_tokens, er.end_id) == ("r1", [5, 6, 7], 8, 4)
    assert er.stop_token_ids == [[1], [9]] and shape.hidden_stop_ids == {1, 9}
    assert er.sampling.is_greedy and er.sampling.top_k == 0 and er.sampling.seed == 3
    assert er.sampling.min_tokens == 2 and not er.return_log_probs and shape.num_top_log_probs is None


def test_ignore_eos_drops_every_end_of_sequence_id_and_max_tokens_defaults_as_trtpipes_frontend():
    er, shape = engine_request("r", request(stop_conditions={"ignore_eos": True}), SPEC)
    assert er.end_id is None and er.stop_token_ids == [] and er.max_new_tokens == SPEC.default_max_tokens
    er, _ = engine_request("r", request(token_ids=list(range(100))), SPEC)
    assert er.max_new_tokens == 16
    er, _ = engine_request("r", request(token_ids=list(range(120))), replace(SPEC, max_input_len=125))
    assert er.max_new_tokens == 8  # shortened so that a prompt that fits never fails


@pytest.mark.parametrize("req, names", [
    (request(token_ids=[]), "`token_ids`"),
    (request(token_ids=list(range(101))), "at most 100"),
    (request(stop_conditions={"max_tokens": 65}), "`max_tokens`"),
    (request(token_ids=list(range(100)), stop_conditions={"max_tokens": 60}), "maximum context length is 128"),
    (request(sampling_options={"n": 2}), "`n`"),
    (request(sampling_options={"min_p": 0.1}), "`min_p`"),
    (request(sampling_options={"use_beam_search": True}), "`use_beam_search`"),
    (request(sampling_options={"top_p": 0.0}), "`top_p`"),
    (request(output_options={"logprobs": 6}), "`logprobs` must be in 0..5"),
    (request(output_options={"prompt_logprobs": 1}), "`prompt_logprobs`"),
    (request(sampling_options={"guided_decoding": {"regex": "a+"}}), "guided decoding is off"),
])
def test_what_the_engine_cannot_honour_is_refused_by_name(req, names):
    with pytest.raises(RequestRefused, match=names.replace("(", r"\(")):
        engine_request("r", req, SPEC)


def test_guides_map_to_the_engines_guide_types():
    seen = []

    class Compiled:
        def new_state(self):
            return "state"

    def compile_guide(kind, guide):
        seen.append((kind, guide))
        return Compiled()

    for guided in ({"json": {"type": "object"}}, {"regex": "[ab]+"}, {"choice": ["yes", "a.b"]},
                   {"grammar": "root ::= \"x\""}, {"json_object": True, "backend": "xgrammar"}):
        er, _ = engine_request("r", request(sampling_options={"guided_decoding": guided}), SPEC, compile_guide)
        assert er.grammar == "state"
    assert seen == [("json_schema", '{"type": "object"}'), ("regex", "[ab]+"), ("regex", r"yes|a\.b"),
                    ("ebnf_grammar", 'root ::= "x"'), ("json_schema", '{"type": "object"}')]
    with pytest.raises(RequestRefused, match="exactly one of"):
        engine_request("r", request(sampling_options={"guided_decoding": {"regex": "a", "json": {}}}), SPEC,
                       compile_guide)


def out(ids, finished=False, reason=None, lps=None, tops=None, reused=0) -> RequestOutput:
    return RequestOutput("r", ids, lps, finished, reason, num_prompt_tokens=3, num_output_tokens=0,
                         num_reused_prompt_tokens=reused, new_top_log_probs=tops)


def test_chunks_carry_tokens_then_the_exact_finish_reason_and_usage_and_hide_an_end_of_sequence_stop():
    _, shape = engine_request("r", request(), SPEC)
    assert response_chunk(out([10, 11]), shape, 0) == {"token_ids": [10, 11], "index": 0}
    last = response_chunk(out([12, 1], True, "stop", reused=32), shape, 2)
    assert last == {"token_ids": [12], "index": 0, "finish_reason": "stop", "completion_usage": {
        "prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6, "prompt_tokens_details": {"cached_tokens": 32}}}
    assert response_chunk(out([1], True, "length"), shape, 0)["token_ids"] == [1]  # a length stop shows it
    assert response_chunk(out([], True, "cancelled"), shape, 5)["finish_reason"] == "cancelled"


def test_log_probs_and_top_log_probs_align_with_the_tokens():
    _, shape = engine_request("r", request(output_options={"logprobs": 2}), SPEC, token_text=lambda t: f"<{t}>")
    chunk = response_chunk(out([7, 8], lps=[-0.5, -1.0], tops=[([7, 3], [-0.5, -2.0]), ([8, 9], [-1.0, -1.5])]),
                           shape, 0)
    assert chunk["log_probs"] == [-0.5, -1.0]
    assert chunk["top_logprobs"][1] == [{"rank": 1, "token_id": 8, "token": "<8>", "logprob": -1.0},
                                        {"rank": 2, "token_id": 9, "token": "<9>", "logprob": -1.5}]
