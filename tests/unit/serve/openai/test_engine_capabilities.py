"""What the engine can return beyond the tensorrt_llm interface is written into the spec by the backend at
publish, and the frontend refuses a request that needs more with a 400 naming the parameter (no backend
names in serve/)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from trtpipe.backend_registry import get_backend
from trtpipe.config import load_config
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.validation import validate_chat, validate_completion
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest


def _spec(backend: str, config: str):
    return get_backend(backend).serving_spec(load_config(config))


def test_the_reference_backend_advertises_top_alternatives_prompt_log_probs_and_resumable_grammars():
    spec = _spec("reference", "tiny-llama")
    assert (spec.max_top_log_probs, spec.returns_prompt_log_probs, spec.resumes_guided_decoding) == (20, True, True)


# llama-8b-pytorch and llama-70b-pytorch speculate inside TensorRT-LLM (eagle3, ngram), whose speculative samplers
# return the sampled token's log-prob only.
@pytest.mark.parametrize("backend, config", [("trt-engine", "llama-8b"), ("trtllm-pytorch", "llama-8b-pytorch"),
                                             ("trtllm-pytorch", "llama-70b-pytorch")])
def test_the_cpp_backend_and_engine_speculation_advertise_the_sampled_token_log_prob_only(backend, config):
    spec = _spec(backend, config)
    assert (spec.max_top_log_probs, spec.returns_prompt_log_probs, spec.resumes_guided_decoding) == (0, False, False)


def test_the_llm_api_backend_without_speculation_advertises_20_top_log_probs_but_no_prompt_log_probs():
    # SamplingParams(logprobs=k) gives top alternatives; 1.2.x prompt_logprobs lacks the prompt token's own log-prob.
    spec = _spec("trtllm-pytorch", "tinyllama-pytorch")
    assert (spec.max_top_log_probs, spec.returns_prompt_log_probs, spec.resumes_guided_decoding) == (20, False, False)


def test_top_alternatives_reach_the_engine_call_on_the_llm_api_backend_and_echo_with_logprobs_is_a_400(text):
    model = SimpleNamespace(spec=_spec("trtllm-pytorch", "tinyllama-pytorch"), text=text)
    gen = validate_completion(CompletionRequest(model="tinyllama-pytorch", prompt=[1, 2, 3], logprobs=5), model)
    assert [(c.num_top_log_probs, c.return_prompt_log_probs) for c in gen.calls] == [(5, False)]
    with pytest.raises(RequestError) as e:
        validate_completion(CompletionRequest(model="tinyllama-pytorch", prompt=[1, 2], echo=True, logprobs=2), model)
    assert e.value.param == "echo"


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


# --- guided decoding: the spec says whether the engine enforces guides; without it, every guided request is a 400 ---

@pytest.mark.parametrize("backend, config, library", [("reference", "tiny-llama", "llguidance"),
                                                      ("trt-engine", "llama-8b", "xgrammar"),
                                                      ("trtllm-pytorch", "llama-8b-pytorch", "xgrammar")])
def test_each_backend_writes_which_library_enforces_guides_into_the_spec(backend, config, library):
    assert _spec(backend, config).guided_decoding == library


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    from trtpipe.serve.openai.text import ModelText
    from trtpipe.stages.synthetic import write_synthetic_checkpoint

    d = tmp_path_factory.mktemp("tiny-tok")
    write_synthetic_checkpoint("tiny-llama", d)
    return ModelText.from_dir(d)


def _off(backend: str, config: str, text):
    spec = get_backend(backend).serving_spec(load_config(config, ["serving.guided_decoding=none"]))
    assert spec.guided_decoding is None
    return SimpleNamespace(spec=spec, text=text)


SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}
TOOLS = [{"type": "function", "function": {"name": "f", "parameters": SCHEMA}}]


@pytest.mark.parametrize("kw, param", [
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": SCHEMA}}}, "response_format"),
    ({"guided_regex": "a+"}, "guided_regex"),
    ({"guided_choice": ["yes", "no"]}, "guided_choice"),
    ({"structured_outputs": {"grammar": 'root ::= "x"'}}, "structured_outputs.grammar"),
    ({"tools": TOOLS, "tool_choice": "required"}, "tool_choice"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
])
@pytest.mark.parametrize("backend, config", [("trt-engine", "llama-8b"), ("trtllm-pytorch", "llama-8b-pytorch"),
                                             ("reference", "tiny-llama")])
def test_a_guided_request_to_a_model_without_guided_decoding_is_a_400_naming_the_parameter(kw, param, backend, config,
                                                                                          text):
    req = ChatCompletionRequest(model=config, messages=[{"role": "user", "content": "hi"}], **kw)
    with pytest.raises(RequestError) as e:
        validate_chat(req, _off(backend, config, text))
    assert e.value.param == param
    assert f"`{param}` needs guided decoding, which this model was published without" in str(e.value)
    assert f"backend {backend}" in str(e.value)


def test_without_guided_decoding_auto_tools_and_plain_requests_still_pass(text):
    model = _off("trt-engine", "llama-8b", text)
    plain = validate_chat(ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}]), model)
    auto = validate_chat(ChatCompletionRequest(model="m", messages=[{"role": "user", "content": "hi"}], tools=TOOLS,
                                               tool_choice="auto"), model)
    assert plain.calls[0].guide_type is None and auto.calls[0].guide_type is None
    completion = validate_completion(CompletionRequest(model="m", prompt="hi", guided_json=SCHEMA),
                                     SimpleNamespace(spec=_spec("trt-engine", "llama-8b"), text=text))
    assert completion.calls[0].guide_type == "json_schema"  # on: compiled here and sent to the engine
