"""vLLM's request extensions: the ones implemented (stop_token_ids, include_stop_str_in_output, chat_template_kwargs,
priority) reach what they change; the ones not implemented are a 400 naming the field, never ignored."""

from __future__ import annotations

import pytest

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.choice_stream import StopStringMatcher
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import UNSUPPORTED_EXTENSIONS, validate_chat, validate_completion
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest
from tests.unit.serve.served_model import tiny_served_model

TEMPLATE = ("{% for m in messages %}{{ m.content }}{% endfor %}"
            "{% if enable_thinking %}<think>{% else %}<answer>{% endif %}")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ServedModel:
    return tiny_served_model(tmp_path_factory, TEMPLATE)


def chat(model, **kw):
    return validate_chat(ChatCompletionRequest(model="tiny-llama", messages=[{"role": "user", "content": "Hi"}],
                                               **kw), model)


def test_chat_template_kwargs_reach_the_template(model):
    assert chat(model).prompt_texts == ["Hi<answer>"]
    assert chat(model, chat_template_kwargs={"enable_thinking": True}).prompt_texts == ["Hi<think>"]


def test_chat_template_kwargs_may_not_replace_what_the_server_passes(model):
    with pytest.raises(RequestError) as e:
        chat(model, chat_template_kwargs={"messages": []})
    assert (e.value.param, e.value.status) == ("chat_template_kwargs", 400) and "`messages`" in e.value.message


def test_stop_token_ids_become_stop_words_after_the_end_of_sequence_ones(model):
    call = chat(model, stop_token_ids=[7, 9]).calls[0]
    assert call.stop_token_ids[-2:] == [[7], [9]]
    with pytest.raises(RequestError) as e:
        chat(model, stop_token_ids=[model.text.vocab_size])
    assert e.value.param == "stop_token_ids"


def test_priority_and_include_stop_str_travel_with_the_generation(model):
    gen = validate_completion(CompletionRequest(model="tiny-llama", prompt="Hi", priority=-3, stop=["x"],
                                                include_stop_str_in_output=True), model)
    assert (gen.priority, gen.include_stop_str, gen.stop_strings) == (-3, True, ["x"])


@pytest.mark.parametrize("include, expected", [(False, "The end"), (True, "The end. ")])
def test_a_stop_string_across_deltas_is_kept_only_when_asked(include, expected):
    matcher = StopStringMatcher(["zz", ". "], include_stop=include)
    out, stopped = matcher.feed("The en")
    text, stopped = matcher.feed("d. More")
    assert stopped and out + text == expected


@pytest.mark.parametrize("field, value", [("min_p", 0.05), ("prompt_logprobs", 1), ("use_beam_search", True),
                                          ("skip_special_tokens", False), ("add_generation_prompt", False),
                                          ("chat_template", "{{ 1 }}")])
def test_an_extension_this_server_does_not_implement_is_refused_by_name(model, field, value):
    assert field in UNSUPPORTED_EXTENSIONS
    with pytest.raises(RequestError) as e:
        chat(model, **{field: value})
    assert (e.value.param, e.value.status) == (field, 400)
    assert e.value.message == f"`{field}` is not supported by this server"


def test_the_value_that_means_unused_is_accepted_for_every_refused_extension(model):
    chat(model, **UNSUPPORTED_EXTENSIONS)  # e.g. min_p 0.0, skip_special_tokens true: as if not sent


def test_continuous_usage_stats_is_refused_and_include_usage_is_not(model):
    with pytest.raises(RequestError) as e:
        chat(model, stream=True, stream_options={"include_usage": True, "continuous_usage_stats": True})
    assert e.value.param == "stream_options.continuous_usage_stats"
    chat(model, stream=True, stream_options={"include_usage": True, "continuous_usage_stats": False})
