"""Bad input never reaches Triton and never gets a 500: a table of bad requests and the envelope each gets."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.helpers import running_frontend, settings_for

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "hi"}]

# (endpoint, request fields, status, param, code)
BAD_REQUESTS = [
    ("chat", {"max_tokens": 100000}, 400, "max_tokens", None),
    ("chat", {"max_completion_tokens": 513}, 400, "max_completion_tokens", None),
    ("chat", {"max_tokens": 0}, 400, "max_tokens", None),
    ("chat", {"max_tokens": "many"}, 400, "max_tokens", None),
    ("chat", {"temperature": 3}, 400, "temperature", None),
    ("chat", {"top_p": 0}, 400, "top_p", None),
    ("chat", {"top_k": -1}, 400, "top_k", None),
    ("chat", {"n": 0}, 400, "n", None),
    ("chat", {"n": 17}, 400, "n", None),
    ("chat", {"presence_penalty": 5}, 400, "presence_penalty", None),
    ("chat", {"frequency_penalty": -3}, 400, "frequency_penalty", None),
    ("chat", {"seed": -1}, 400, "seed", None),
    ("chat", {"stop": ["a", "b", "c", "d", "e"]}, 400, "stop", None),
    ("chat", {"stop": ""}, 400, "stop", None),
    ("chat", {"logprobs": True, "top_logprobs": 21}, 400, "top_logprobs", None),
    ("chat", {"top_logprobs": 0}, 400, "top_logprobs", None),
    ("chat", {"logit_bias": {"1": 5}}, 400, "logit_bias", None),
    ("chat", {"stream_options": {"include_usage": True}}, 400, "stream_options", None),
    ("chat", {"messages": []}, 400, "messages", None),
    ("chat", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages.0.role", None),
    ("chat", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     400, "messages.0.content.0.type", None),
    ("chat", {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}},
     400, "response_format", None),
    ("chat", {"tools": [{"type": "function", "function": {"name": "f"}}],
              "tool_choice": {"type": "function", "function": {"name": "g"}}}, 400, "tool_choice", None),
    ("chat", {"min_tokens": 50, "max_tokens": 10}, 400, "min_tokens", None),
    ("chat", {"messages": [{"role": "user", "content": "robot " * 2000}]}, 400, "messages", "context_length_exceeded"),
    ("chat", {"model": "nope"}, 404, "model", "model_not_found"),
    ("completions", {"prompt": "robot " * 2000, "max_tokens": 10}, 400, "prompt", "context_length_exceeded"),
    ("completions", {"prompt": [1] * 800, "max_tokens": 300}, 400, "prompt", "context_length_exceeded"),
    ("completions", {"prompt": [1, 99999]}, 400, "prompt", None),
    ("completions", {"prompt": []}, 400, "prompt", None),
    ("completions", {"prompt": 42}, 400, "prompt", None),
    ("completions", {"logprobs": 21}, 400, "logprobs", None),
    ("completions", {"suffix": "end"}, 400, "suffix", None),
    ("completions", {"best_of": 3}, 400, "best_of", None),
    ("completions", {"prompt": [[1, 2]] * 5, "n": 4}, 400, "n", None),
]


@pytest.mark.parametrize("endpoint,fields,status,param,code", BAD_REQUESTS,
                         ids=[f"{e}-{p}-{i}" for i, (e, _, _, p, _) in enumerate(BAD_REQUESTS)])
def test_bad_request_gets_the_openai_envelope_naming_the_parameter(frontend, endpoint, fields, status, param, code):
    body = {"model": "tiny-llama", **({"messages": MSG} if endpoint == "chat" else {"prompt": "hi"}), **fields}
    r = httpx.post(f"{frontend}/{'chat/completions' if endpoint == 'chat' else 'completions'}", json=body, timeout=10)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["code"] == code, error
    assert error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in r.text


def test_the_openai_client_raises_typed_errors_with_the_body(frontend):
    client = OpenAI(base_url=frontend, api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=100000)
    assert err.value.body["param"] == "max_tokens"
    assert "must be <= 512. Given: 100000" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=100000, stream=True)
    assert err.value.status_code == 400  # validation happens before the stream starts
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="nope", messages=MSG)
    assert err.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("content,headers,status", [
    (b"{not json", {"content-type": "application/json"}, 400),
    (b"[1, 2]", {"content-type": "application/json"}, 400),
    (b'"just a string"', {"content-type": "application/json"}, 400),
    (b'{"model": "tiny-llama"}', {"content-type": "application/json"}, 400),
    (b"", {"content-type": "application/json"}, 400),
])
def test_malformed_bodies_are_400_not_500(frontend, content, headers, status):
    r = httpx.post(f"{frontend}/chat/completions", content=content, headers=headers, timeout=10)
    assert r.status_code == status, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_unknown_routes_and_methods_get_envelopes(frontend):
    r = httpx.get(f"{frontend}/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(f"{frontend}/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_oversized_bodies_are_413(triton, built_repo):
    with running_frontend(settings_for(triton, built_repo, max_body_bytes=2048)) as url:
        big = {"model": "tiny-llama", "prompt": "x" * 4096}
        r = httpx.post(f"{url}/completions", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunked():
            yield b'{"model": "tiny-llama", "prompt": "'
            for _ in range(8):
                yield b"y" * 512
            yield b'"}'

        r = httpx.post(f"{url}/completions", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert httpx.post(f"{url}/completions", json={"model": "tiny-llama", "prompt": "ok", "max_tokens": 2}
                          ).status_code == 200


def test_api_keys_guard_every_route_but_liveness(triton, built_repo):
    with running_frontend(settings_for(triton, built_repo, api_keys=("key-one", "key-two"))) as url:
        root = url.removesuffix("/v1")
        assert httpx.get(f"{root}/health/live").status_code == 200
        assert httpx.get(f"{root}/metrics").status_code == 200  # open unless protect_metrics
        for path in ("/v1/models", "/health/ready", "/openapi.json"):
            r = httpx.get(root + path)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
            assert r.headers["www-authenticate"] == "Bearer"
        r = httpx.get(f"{url}/models", headers={"Authorization": "Bearer key-tw0"})
        assert r.status_code == 401 and "key-tw0" not in r.text
        with pytest.raises(openai.AuthenticationError):
            OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        for key in ("key-one", "key-two"):
            out = OpenAI(base_url=url, api_key=key, max_retries=0).completions.create(
                model="tiny-llama", prompt="hi", max_tokens=2)
            assert out.usage.completion_tokens >= 1
    with running_frontend(settings_for(triton, built_repo, api_keys=("k",), protect_metrics=True)) as url:
        root = url.removesuffix("/v1")
        assert httpx.get(f"{root}/metrics").status_code == 401
        assert httpx.get(f"{root}/metrics", headers={"Authorization": "Bearer k"}).status_code == 200
        assert httpx.get(f"{root}/health/live").status_code == 200


def test_a_model_published_without_guided_decoding_answers_guided_requests_with_a_400(triton, built_repo, tmp_path):
    # The same tiny-llama, published with serving.guided_decoding: none into its own repository; its spec.json
    # says so and the frontend refuses every guided request before Triton is called (the official client sees it).
    from trtpipe.build import build
    from trtpipe.config import load_config

    repo = tmp_path / "repo"
    build(load_config("tiny-llama", ["serving.guided_decoding=none"]), repo)
    with running_frontend(settings_for(triton, repo)) as url:
        client = OpenAI(base_url=url, api_key="unused", max_retries=0)
        schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
        tools = [{"type": "function", "function": {"name": "f", "parameters": schema}}]
        for kw, param in [
            ({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}},
             "response_format"),
            ({"extra_body": {"guided_regex": "[0-9]+"}}, "guided_regex"),
            ({"tools": tools, "tool_choice": "required"}, "tool_choice"),
        ]:
            with pytest.raises(openai.BadRequestError) as e:
                client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=4, **kw)
            assert e.value.body["param"] == param and "needs guided decoding" in e.value.body["message"]
        # Plain requests, and tools the model may or may not call, are served as before.
        assert client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=2).choices
        assert client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=2, tools=tools).choices
