"""What the engine can return beyond the tensorrt_llm interface is written into the spec by the backend at
publish, and the frontend refuses a request that needs more with a 400 naming the parameter (no backend
names in serve/)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trtpipe.backends import get_backend
from trtpipe.config import load_config
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest
from trtpipe.serve.validation import RequestError, validate_chat, validate_completion


def _spec(backend: str, config: str):
    return get_backend(backend).serving_spec(load_config(config))


def test_the_reference_backend_advertises_top_alternatives_prompt_log_probs_and_resumable_grammars():
    spec = _spec("reference", "tiny-llama")
    assert (spec.max_top_log_probs, spec.returns_prompt_log_probs, spec.resumes_guided_decoding) == (20, True, True)


@pytest.mark.parametrize("backend, config", [("trt-engine", "llama-8b"), ("trtllm-pytorch", "llama-8b-pytorch")])
def test_tensorrt_llm_backends_advertise_the_sampled_token_log_prob_only(backend, config):
    spec = _spec(backend, config)
    assert (spec.max_top_log_probs, spec.returns_prompt_log_probs, spec.resumes_guided_decoding) == (0, False, False)


def test_top_logprobs_on_a_model_without_them_is_a_400_naming_the_parameter():
    model = SimpleNamespace(spec=_spec("trt-engine", "llama-8b"))
    req = ChatCompletionRequest(model="llama-8b", messages=[{"role": "user", "content": "hi"}], logprobs=True,
                                top_logprobs=3)
    with pytest.raises(RequestError) as e:
        validate_chat(req, model)
    assert e.value.param == "top_logprobs" and "must be 0 for this model" in str(e.value) and "Given: 3" in str(e.value)


def test_echo_with_logprobs_on_a_model_without_prompt_log_probs_is_a_400_naming_echo():
    model = SimpleNamespace(spec=_spec("trtllm-pytorch", "llama-8b-pytorch"))
    req = CompletionRequest(model="llama-8b-pytorch", prompt="hi", echo=True, logprobs=0)
    with pytest.raises(RequestError) as e:
        validate_completion(req, model)
    assert e.value.param == "echo"
