"""A prompt that cannot fit is refused on its raw text, before it is rendered or tokenized; one that can fit is
never refused by that check."""

from __future__ import annotations

import pytest

from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import check_prompt_size
from trtpipe.serve.protocol import ChatCompletionRequest, CompletionRequest
from tests.unit.serve.served_model import tiny_served_model


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ServedModel:
    return tiny_served_model(tmp_path_factory)


def test_no_token_is_longer_than_max_token_chars(model):
    text = model.text
    assert text.max_token_chars == max(len(text.tokenizer.decode([i], skip_special_tokens=False))
                                       for i in range(text.vocab_size))


def test_the_limit_is_max_input_len_times_the_longest_token(model):
    limit = model.spec.max_input_len * model.text.max_token_chars
    check_prompt_size(CompletionRequest(model="m", prompt="a" * limit), model, chat=False)
    with pytest.raises(RequestError) as e:
        check_prompt_size(CompletionRequest(model="m", prompt="a" * (limit + 1)), model, chat=False)
    assert (e.value.status, e.value.param, e.value.code) == (400, "prompt", "context_length_exceeded")
    assert f"at most {model.spec.max_input_len} prompt tokens" in e.value.message and str(limit) in e.value.message


def test_chat_counts_the_text_of_every_message_and_part(model):
    limit = model.spec.max_input_len * model.text.max_token_chars
    half = "b" * (limit // 2 + 1)
    messages = [{"role": "system", "content": half},
                {"role": "user", "content": [{"type": "text", "text": half}]}]
    with pytest.raises(RequestError) as e:
        check_prompt_size(ChatCompletionRequest(model="m", messages=messages), model, chat=True)
    assert e.value.param == "messages"
    check_prompt_size(ChatCompletionRequest(model="m", messages=messages[:1]), model, chat=True)


def test_a_prompt_of_token_ids_is_left_to_the_exact_token_check(model):
    check_prompt_size(CompletionRequest(model="m", prompt=[[1] * 100_000]), model, chat=False)
