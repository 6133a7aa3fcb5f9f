"""logprobs with top alternatives (chat `top_logprobs`, completions `logprobs: int`) from the reference engine."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e
MESSAGES = [{"role": "user", "content": "Tell me a story."}]


def test_chat_top_logprobs_stream_and_not_agree_and_lead_with_the_greedy_token(client):
    kw = dict(model="tiny-llama", messages=MESSAGES, max_tokens=12, temperature=0.0, logprobs=True, top_logprobs=20,
              extra_body={"ignore_eos": True})
    full = client.chat.completions.create(**kw).choices[0].logprobs.content
    chunks = list(client.chat.completions.create(stream=True, **kw))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert len(full) == 12 and [t.token for t in streamed] == [t.token for t in full]
    for t, s in zip(full, streamed):
        assert len(t.top_logprobs) == 20
        values = [a.logprob for a in t.top_logprobs]
        assert values == sorted(values, reverse=True)
        # Greedy: the sampled token is the most likely one, with the same log-probability.
        assert t.top_logprobs[0].bytes == t.bytes and t.top_logprobs[0].logprob == pytest.approx(t.logprob)
        assert [a.logprob for a in s.top_logprobs] == pytest.approx(values)


def test_completions_logprobs_int_gives_that_many_alternatives_per_token(client):
    r = client.completions.create(model="tiny-llama", prompt="Once upon a time", max_tokens=6, temperature=1.0, seed=3,
                                  logprobs=3, extra_body={"ignore_eos": True})
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.top_logprobs) == 6
    for token, value, alternatives in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert 1 <= len(alternatives) <= 3 and all(v <= 0 for v in alternatives.values())
        assert token not in alternatives or alternatives[token] == pytest.approx(value, abs=1e-5)


def test_top_logprobs_of_a_guided_request_list_only_allowed_tokens(client):
    r = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=8, temperature=1.0, seed=1,
                                       logprobs=True, top_logprobs=10, extra_body={"guided_regex": "[0-9]{4}"})
    choice = r.choices[0]
    assert choice.message.content.isdigit() and len(choice.message.content) == 4
    for t in choice.logprobs.content:
        assert t.top_logprobs and all(a.token.isdigit() for a in t.top_logprobs)


@pytest.mark.parametrize("k", [0, 2])
def test_echo_with_logprobs_scores_the_prompt_stream_and_not_alike(client, k):
    kw = dict(model="tiny-llama", prompt="Once upon a time there was", max_tokens=5, temperature=0.0, echo=True,
              logprobs=k, extra_body={"ignore_eos": True})
    full = client.completions.create(**kw)
    lp, usage = full.choices[0].logprobs, full.usage
    assert len(lp.tokens) == usage.prompt_tokens + usage.completion_tokens
    assert full.choices[0].text.startswith("Once upon a time there was")
    assert lp.token_logprobs[0] is None and all(v <= 0 for v in lp.token_logprobs[1:])
    assert "".join(lp.tokens) == full.choices[0].text and lp.text_offset[0] == 0
    if k:
        assert lp.top_logprobs[0] is None and all(1 <= len(t) <= k for t in lp.top_logprobs[1:])
    chunks = list(client.completions.create(stream=True, **kw))
    streamed = [v for c in chunks if c.choices and c.choices[0].logprobs for v in c.choices[0].logprobs.token_logprobs]
    assert streamed[0] is None and streamed[1:] == pytest.approx(lp.token_logprobs[1:], abs=1e-5)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == full.choices[0].text
