"""JSON on the wire is strict both ways: `null` means "the default" for every nullable request field, and no
response ever carries NaN or Infinity (an impossible log-prob is OpenAI's -9999.0)."""

from __future__ import annotations

import json

import httpx
import pytest

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hi"}]


def strict_loads(text: str):
    def refuse(constant: str):
        raise AssertionError(f"non-standard JSON constant on the wire: {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("path, body", [
    ("chat/completions", {"messages": MSG, "n": None, "presence_penalty": None, "frequency_penalty": None,
                          "logprobs": None, "top_logprobs": None, "stream": None, "stream_options": None,
                          "temperature": None, "top_p": None, "stop": None, "seed": None, "max_tokens": None,
                          "max_completion_tokens": None, "tools": None, "tool_choice": None, "user": None,
                          "response_format": None, "logit_bias": None, "parallel_tool_calls": None}),
    ("completions", {"prompt": "hi", "n": None, "echo": None, "logprobs": None, "stream": None, "suffix": None,
                     "best_of": None, "presence_penalty": None, "frequency_penalty": None, "max_tokens": None}),
])
def test_null_means_the_default_for_every_nullable_field(frontend, path, body):
    r = httpx.post(f"{frontend}/{path}", json={"model": "tiny-llama", **body}, timeout=60)
    assert r.status_code == 200, r.text
    choice = strict_loads(r.text)["choices"][0]
    assert choice["finish_reason"] in ("stop", "length") and choice["logprobs"] is None


@pytest.mark.parametrize("stream", [False, True])
def test_an_extreme_repetition_penalty_gives_finite_log_probs_never_nan(frontend, stream):
    body = {"model": "tiny-llama", "messages": MSG, "max_tokens": 8, "repetition_penalty": 1e-40,
            "temperature": 0, "logprobs": True, "top_logprobs": 3, "stream": stream}
    r = httpx.post(f"{frontend}/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    if stream:
        events = [strict_loads(line[6:]) for line in r.text.split("\n\n") if line.startswith("data: {")]
        entries = [c for e in events for ch in e["choices"] if ch["logprobs"] for c in ch["logprobs"]["content"]]
    else:
        entries = strict_loads(r.text)["choices"][0]["logprobs"]["content"]
    assert entries
    for e in entries:
        assert e["logprob"] <= 0.0 and (e["logprob"] == -9999.0 or e["logprob"] > -9999.0)
        assert all(alt["logprob"] > -9999.0 for alt in e["top_logprobs"])
