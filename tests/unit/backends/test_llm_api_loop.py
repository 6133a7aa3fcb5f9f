"""The trtllm-pytorch adapter (python_models/llm_api.py) driven against a recorded stand-in for tensorrt_llm.LLM.

These tests do not run TensorRT-LLM. They check what the adapter asks of the LLM API (generate_async with the
prompt's token ids, SamplingParams in its documented names, abort()) and what it answers on trtpipe's
tensor interface (new tokens per streamed response, one final flag, the stop-sequence and cancellation
rules of the reference engine).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.unit.backends import fake_tensorrt_llm as fake
from trtpipe.python_models.llm_api import LlmApiLoop
from trtpipe.python_models.tensors import decode_request


class Sender:
    def __init__(self):
        self.sent: list[tuple] = []
        self.cancelled = False

    def send(self, tensors, *, error=None, final=False):
        self.sent.append((tensors, error, final))

    def is_cancelled(self):
        return self.cancelled

    def wait_final(self, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.sent and self.sent[-1][2]:
                return self.sent
            time.sleep(0.005)
        raise AssertionError(f"no final response; sent so far: {self.sent}")


def tensors(prompt, max_tokens, **extra):
    t = {"input_ids": np.array([prompt], dtype=np.int32), "input_lengths": np.array([[len(prompt)]], dtype=np.int32),
         "request_output_len": np.array([[max_tokens]], dtype=np.int32)}
    t.update({k: np.array([[v]]) for k, v in extra.items() if k != "stop_words_list"})
    if "stop_words_list" in extra:
        t["stop_words_list"] = np.array([extra["stop_words_list"]], dtype=np.int32)
    return t


@pytest.fixture
def loop(monkeypatch):
    module = fake.install(monkeypatch)
    llm = module.LLM(model="/m")
    loop = LlmApiLoop(llm, module, poll_s=0.005)
    loop.start()
    yield loop
    loop.shutdown()


def submit(loop, request_id, t):
    sender = Sender()
    request, opts = decode_request(request_id, t)
    loop.submit(request, opts, sender)
    return sender


def test_streaming_sends_each_new_token_then_one_final_and_records_documented_sampling_names(loop):
    sent = submit(loop, "r1", tensors([1, 2, 3], 3, streaming=True, end_id=2, temperature=0.0)).wait_final()
    assert [list(t["output_ids"].reshape(-1)) for t, _, _ in sent] == [[100], [101], [102]]
    assert [final for _, _, final in sent] == [False, False, True]
    [(prompt, kwargs, streaming)] = loop.llm.calls
    assert prompt == [1, 2, 3] and streaming is True
    assert kwargs == {"max_tokens": 3, "detokenize": False, "n": 1, "top_k": 1, "end_id": 2, "pad_id": 2}


def test_non_streaming_sends_prompt_and_tokens_once_and_drops_end_id(loop):
    loop.llm.end_at = 2
    sent = submit(loop, "r2", tensors([7, 8], 10, end_id=5)).wait_final()
    assert len(sent) == 1 and sent[0][2] is True
    assert list(sent[0][0]["output_ids"].reshape(-1)) == [7, 8, 100, 101]  # the end_id itself is dropped
    assert int(sent[0][0]["sequence_length"].reshape(-1)[0]) == 4


def test_a_stop_sequence_is_kept_ends_the_request_and_aborts_it_in_the_engine(loop):
    # stop_words_list [1, 2, L]: ids 101 102, offsets [2] padded with -1.
    sent = submit(loop, "r3", tensors([1], 10, streaming=True, stop_words_list=[[101, 102], [2, -1]])).wait_final()
    tokens = [int(x) for t, _, _ in sent if t is not None for x in t["output_ids"].reshape(-1)]
    assert tokens == [100, 101, 102] and loop.llm.aborted == [[1]]


def test_sampled_requests_pass_temperature_top_p_seed_penalties_and_log_probs(loop):
    sent = submit(loop, "r4", tensors([1], 2, temperature=0.7, runtime_top_p=0.9, runtime_top_k=40, seed=3,
                                      repetition_penalty=1.1, return_log_probs=True)).wait_final()
    kwargs = loop.llm.calls[0][1]
    assert kwargs["temperature"] == pytest.approx(0.7) and kwargs["top_p"] == pytest.approx(0.9)
    assert kwargs["top_k"] == 40 and kwargs["seed"] == 3 and kwargs["logprobs"] == 1
    assert kwargs["repetition_penalty"] == pytest.approx(1.1)
    assert list(sent[-1][0]["output_log_probs"].reshape(-1)) == [-0.5, -0.5]


def test_a_cancelled_client_aborts_its_request_even_while_it_is_queued(loop):
    sender = submit(loop, "r5", tensors([fake.HOLD], 4, streaming=True))
    time.sleep(0.05)
    sender.cancelled = True
    sent = sender.wait_final()
    assert sent == [(None, "request cancelled", True)]
    assert loop.llm.aborted == [[fake.HOLD]]


def test_a_stop_request_ends_the_running_request_and_answers_empty_final(loop):
    running = submit(loop, "r6", tensors([fake.HOLD], 4, streaming=True))
    time.sleep(0.02)
    stopper = Sender()
    loop.stop_request("r6", stopper)
    assert running.wait_final() == [(None, "request stopped by a `stop` request", True)]
    assert stopper.wait_final() == [({}, None, True)]


def test_draft_tokens_are_refused_because_the_engine_speculates_itself(loop):
    t = tensors([1, 2], 2)
    t["draft_input_ids"] = np.array([[5, 6]], dtype=np.int32)
    [(tensors_out, error, final)] = submit(loop, "r7", t).wait_final()
    assert tensors_out is None and final and "draft_input_ids' is not accepted" in error
    assert loop.llm.calls == []


def submit_guided(loop, request_id, guide_type, guide=None):
    extra = {"guided_decoding_guide_type": np.array([[guide_type]], dtype=object)}
    if guide is not None:
        extra["guided_decoding_guide"] = np.array([[guide]], dtype=object)
    request, opts = decode_request(request_id, {**tensors([1, 2], 2), **extra}, engine_enforces_guides=True)
    sender = Sender()
    loop.submit(request, opts, sender)
    return sender


SCHEMA = '{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]}'
TAG = '{"type":"structural_tag","structures":[{"begin":"<f>","schema":{"type":"object"},"end":"</f>"}],"triggers":["<f>"]}'


@pytest.mark.parametrize("guide_type, guide, expected", [
    ("json", None, fake.GuidedDecodingParams(json_object=True)),
    ("json_schema", SCHEMA, fake.GuidedDecodingParams(json=SCHEMA)),
    ("regex", r"\d{3}", fake.GuidedDecodingParams(regex=r"\d{3}")),
    ("ebnf_grammar", 'root ::= "yes" | "no"', fake.GuidedDecodingParams(grammar='root ::= "yes" | "no"')),
    ("structural_tag", TAG, fake.GuidedDecodingParams(structural_tag=TAG)),
])
def test_each_guide_type_becomes_sampling_params_guided_decoding_with_its_field(loop, guide_type, guide, expected):
    sent = submit_guided(loop, f"g-{guide_type}", guide_type, guide).wait_final()
    assert sent[-1][1] is None  # answered, not refused
    [(_, kwargs, _)] = loop.llm.calls
    assert kwargs["guided_decoding"] == expected
    assert kwargs["max_tokens"] == 2  # beside the usual sampling arguments, which are unchanged


def test_every_guide_type_the_tensors_accept_has_a_guided_decoding_field():
    from trtpipe.python_models.llm_api import GUIDED_DECODING_FIELDS
    from trtpipe.engine.grammar import GUIDE_TYPES

    assert sorted(GUIDED_DECODING_FIELDS) == sorted(GUIDE_TYPES)


def test_a_request_without_a_guide_passes_no_guided_decoding(loop):
    submit(loop, "plain", tensors([1, 2], 2)).wait_final()
    [(_, kwargs, _)] = loop.llm.calls
    assert "guided_decoding" not in kwargs


@pytest.mark.parametrize("extra, match", [
    ({"guided_decoding_guide_type": "yaml"}, "'guided_decoding_guide_type' must be one of json, json_schema"),
    ({"guided_decoding_guide_type": "regex"}, "'regex' needs the input 'guided_decoding_guide'"),
    ({"guided_decoding_guide": "x"}, "'guided_decoding_guide' needs 'guided_decoding_guide_type'"),
    ({"guided_decoding_guide_type": "json", "guided_decoding_prefix_len": 1},
     "'guided_decoding_prefix_len' is not accepted: this engine cannot resume a grammar"),
])
def test_a_malformed_guide_is_refused_at_decode_naming_the_tensor(extra, match):
    t = {**tensors([1, 2, 3], 2), **{k: np.array([[v]], dtype=object if isinstance(v, str) else np.int32)
                                     for k, v in extra.items()}}
    from trtpipe.python_models.tensors import BadRequest

    with pytest.raises(BadRequest, match=match):
        decode_request("bad", t, engine_enforces_guides=True)


# --- log-probs: SamplingParams logprobs / prompt_logprobs, and the CompletionOutput dicts in the reference's shapes ---

@pytest.mark.parametrize("fields, expected", [
    ({}, {}),
    ({"return_log_probs": True}, {"logprobs": 1}),
    ({"return_log_probs": True, "num_top_log_probs": 5}, {"logprobs": 5}),
    ({"num_top_log_probs": 20}, {"logprobs": 20}),
    ({"return_log_probs": True, "return_prompt_log_probs": True}, {"logprobs": 1, "prompt_logprobs": 1}),
    ({"return_log_probs": True, "num_top_log_probs": 3, "return_prompt_log_probs": True},
     {"logprobs": 3, "prompt_logprobs": 3}),
])
def test_log_prob_requests_become_logprobs_and_prompt_logprobs_with_at_least_one(fields, expected):
    from trtpipe.python_models.llm_api import sampling_kwargs
    from trtpipe.engine import EngineRequest

    kwargs = sampling_kwargs(EngineRequest("r", [1, 2], 4, **fields))
    assert {k: v for k, v in kwargs.items() if k in ("logprobs", "prompt_logprobs")} == expected


def _sent(sent, name):
    return [t[name].tolist() for t, _, _ in sent if t is not None and name in t]


def test_streamed_top_log_probs_are_most_likely_first_per_new_token_beside_the_sampled_ones(loop):
    sent = submit(loop, "t1", tensors([1, 2], 3, streaming=True, return_log_probs=True,
                                      num_top_log_probs=3)).wait_final()
    assert [err for _, err, _ in sent] == [None, None, None]
    assert _sent(sent, "output_top_token_ids") == [[[[100, 220, 240]]], [[[101, 221, 241]]], [[[102, 222, 242]]]]
    assert _sent(sent, "output_top_log_probs") == [[[[-0.5, -1.5, -2.5]]]] * 3
    assert _sent(sent, "output_log_probs") == [[[[-0.5]]]] * 3
    assert loop.llm.calls[0][1]["logprobs"] == 3 and "prompt_logprobs" not in loop.llm.calls[0][1]


def test_non_streaming_top_log_probs_cover_the_kept_tokens_only(loop):
    loop.llm.end_at = 2  # the end_id is dropped, and with it its entry
    [(out, err, final)] = submit(loop, "t2", tensors([7], 10, end_id=5, return_log_probs=True,
                                                     num_top_log_probs=2)).wait_final()
    assert err is None and final
    assert out["output_top_token_ids"].tolist() == [[[100, 220], [101, 221]]]
    assert out["output_top_log_probs"].tolist() == [[[-0.5, -1.5], [-0.5, -1.5]]]
    assert out["output_log_probs"].tolist() == [[[-0.5, -0.5]]]


def test_a_sampled_token_outside_the_returned_top_log_probs_fails_the_request_and_aborts_it(loop):
    # TensorRT-LLM 1.2.x returns the top `logprobs` only: a sampled token outside them has no log-prob to send.
    loop.llm.off_top_at = 1
    sent = submit(loop, "t3", tensors([4], 3, streaming=True, temperature=0.8, return_log_probs=True)).wait_final()
    assert list(sent[0][0]["output_log_probs"].reshape(-1)) == [-0.5]
    (tensors_out, error, final) = sent[-1]
    assert tensors_out is None and final
    assert error.startswith("TensorRT-LLM returned no log-prob for sampled token 101: it returned the 1 most likely")
    assert "greedy decoding" in error and loop.llm.aborted == [[4]]


def test_prompt_log_probs_are_those_of_tokens_1_to_n_minus_1_sent_once_with_the_first_response(loop):
    sent = submit(loop, "p1", tensors([1, 2, 3], 2, streaming=True, return_log_probs=True, num_top_log_probs=2,
                                      return_prompt_log_probs=True)).wait_final()
    assert [err for _, err, _ in sent] == [None, None]
    # Position t predicts token t+1: 2 then 3, each the 2nd most likely; the last position predicts the first output
    # token and is not sent.
    assert _sent(sent, "prompt_log_probs") == [[[-1.25, -1.25]]]
    assert _sent(sent, "prompt_top_token_ids") == [[[[700, 2], [701, 3]]]]
    assert _sent(sent, "prompt_top_log_probs") == [[[[-0.25, -1.25], [-0.25, -1.25]]]]
    assert "prompt_log_probs" in sent[0][0]
    assert loop.llm.calls[0][1]["prompt_logprobs"] == 2


def test_prompt_log_probs_without_the_prompt_token_among_the_top_fail_the_request_naming_the_token(loop):
    # With no top alternatives asked, prompt_logprobs=1: 1.2.x returns only the most likely, not the prompt's own.
    sent = submit(loop, "p2", tensors([1, 2, 3], 2, return_log_probs=True, return_prompt_log_probs=True)).wait_final()
    [(tensors_out, error, final)] = sent
    assert tensors_out is None and final
    assert error.startswith("TensorRT-LLM returned no log-prob for prompt token 2: it returned the 1 most likely")
    assert loop.llm.aborted == [[1, 2, 3]]


def test_equal_log_probs_are_ordered_by_token_id_as_on_the_reference_engine():
    from trtpipe.python_models.llm_api_logprobs import top_log_probs

    entry = {9: fake.Logprob(-1.0, 2), 4: fake.Logprob(-1.0, 3), 7: fake.Logprob(-0.1, 1)}
    assert top_log_probs([entry], 3) == [([7, 4, 9], [-0.1, -1.0, -1.0])]
    assert top_log_probs([entry], 2) == [([7, 4], [-0.1, -1.0])]  # a later release's extra sampled entry is dropped


@pytest.mark.parametrize("entries, k, match", [
    ([{1: fake.Logprob(-0.1, 1)}], 2, "returned 1 top log-probs for a token; 2 were asked for"),
    ([-0.3], 1, "returned one log-prob per token, no alternatives; 1 top were asked for"),
])
def test_too_few_top_log_probs_are_refused_rather_than_padded(entries, k, match):
    from trtpipe.python_models.llm_api_logprobs import LogProbsUnavailable, top_log_probs

    with pytest.raises(LogProbsUnavailable, match=match):
        top_log_probs(entries, k)


def test_prompt_log_probs_shorter_than_the_prompt_are_refused():
    # e.g. a reused KV-cache prefix has no context logits, so TensorRT-LLM scores only the rest of the prompt.
    from trtpipe.python_models.llm_api_logprobs import LogProbsUnavailable, prompt_log_probs

    with pytest.raises(LogProbsUnavailable, match="prompt log-probs for 1 positions; the prompt has 3 tokens"):
        prompt_log_probs([fake.prompt_top([5, 6, 7], 1, 2)], [5, 6, 7], 0)
    assert prompt_log_probs([{6: fake.Logprob(-2.0, 1)}], [5, 6], 0) == ([-2.0], None)
