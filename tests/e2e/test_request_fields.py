"""Request fields through the official openai client on the real server: each one changes what it says, or is a
400 naming it; and usage reports the prompt tokens the engine's prefix cache held."""

from __future__ import annotations

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.e2e
MSG = [{"role": "user", "content": "Tell me something"}]


def test_cached_tokens_report_what_the_prefix_cache_held(client):
    # 70 random token ids: tiny-llama's blocks hold 32 tokens, so the second call reuses exactly 2 blocks.
    prompt = np.random.default_rng().integers(300, 1000, 70).tolist()
    first = client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=2, temperature=0)
    second = client.completions.create(model="tiny-llama", prompt=prompt, max_tokens=2, temperature=0)
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.usage.prompt_tokens_details.cached_tokens == 64


@pytest.mark.parametrize("stream", [False, True])
def test_include_stop_str_in_output_keeps_the_stop_string_that_ended_the_text(client, stream):
    full = client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=24, temperature=0)
    text = full.choices[0].message.content
    stop = text[8:11]  # a piece from the middle of the greedy text
    assert len(stop) == 3 and text.find(stop) >= 0

    def ask(include: bool) -> tuple[str, str]:
        kw = dict(model="tiny-llama", messages=MSG, max_tokens=24, temperature=0, stop=[stop],
                  extra_body={"include_stop_str_in_output": include})
        if not stream:
            r = client.chat.completions.create(**kw)
            return r.choices[0].message.content, r.choices[0].finish_reason
        chunks = list(client.chat.completions.create(stream=True, **kw))
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks[-1].choices[0].finish_reason

    cut = text[:text.find(stop)]
    assert ask(False) == (cut, "stop")
    assert ask(True) == (cut + stop, "stop")


@pytest.mark.parametrize("extra, param", [({"min_p": 0.1}, "min_p"), ({"prompt_logprobs": 2}, "prompt_logprobs"),
                                          ({"use_beam_search": True}, "use_beam_search")])
def test_an_extension_the_server_does_not_implement_is_a_400_naming_it(client, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=2, extra_body=extra)
    assert e.value.body["param"] == param and e.value.body["message"] == f"`{param}` is not supported by this server"


def test_priority_and_a_neutral_min_p_are_accepted(client):
    r = client.chat.completions.create(model="tiny-llama", messages=MSG, max_tokens=2,
                                       extra_body={"priority": -1, "min_p": 0.0})
    assert r.choices[0].finish_reason in ("stop", "length")


def test_a_4mb_prompt_is_refused_on_its_length_with_the_limit_named(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-llama", max_tokens=2,
                                       messages=[{"role": "user", "content": "x " * 2_000_000}])
    assert e.value.body["code"] == "context_length_exceeded" and e.value.body["param"] == "messages"
    assert e.value.body["message"].startswith("The prompt is 4000000 characters long; this model reads at most ")


@pytest.mark.parametrize("path", ["/health", "/health/live", "/health/ready"])
def test_health_routes_answer_get_and_head_as_vllm_clients_probe_them(frontend, path):
    import httpx

    root = frontend.removesuffix("/v1")
    get, head = httpx.get(root + path), httpx.head(root + path)
    assert get.status_code == head.status_code == 200 and head.content == b""
    if path == "/health":
        assert get.json() == {"status": "healthy"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_declared_json_is_refused_with_415_before_it_runs(frontend, content_type):
    import httpx

    headers = {"content-type": content_type} if content_type else {}
    body = b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}'
    r = httpx.post(f"{frontend}/chat/completions", content=body, headers=headers)
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    ok = httpx.post(f"{frontend}/chat/completions", content=body,
                    headers={"content-type": "Application/JSON; charset=utf-8"})
    assert ok.status_code == 200


def test_cors_is_off_by_default_and_answers_only_the_allowed_origins(frontend, triton, built_repo):
    import httpx

    from tests.e2e.helpers import running_frontend, settings_for

    preflight = {"origin": "https://app.example", "access-control-request-method": "POST",
                 "access-control-request-headers": "content-type"}
    off = httpx.options(f"{frontend}/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in off.headers
    with running_frontend(settings_for(triton, built_repo, allowed_origins=("https://app.example",))) as url:
        allowed = httpx.options(f"{url}/chat/completions", headers=preflight)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(f"{url}/chat/completions", headers={**preflight, "origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        post = httpx.post(f"{url}/chat/completions", headers={"origin": "https://app.example"},
                          json={"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        assert post.status_code == 200 and post.headers["access-control-allow-origin"] == "https://app.example"


def test_the_real_frontend_answers_10000_headers_with_431_over_a_raw_socket(frontend):
    import json
    import socket
    from urllib.parse import urlparse

    url = urlparse(frontend)
    headers = b"".join(b"x-h%d: v\r\n" % i for i in range(10_000))
    with socket.create_connection((url.hostname, url.port)) as s:
        s.settimeout(10)
        try:
            s.sendall(b"GET /health/live HTTP/1.1\r\nhost: x\r\n" + headers + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before all of it was sent
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ") and json.loads(body)["error"]["code"] == "request_header_too_large"
