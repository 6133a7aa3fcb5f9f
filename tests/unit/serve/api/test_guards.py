"""API keys, body limits and the metrics exposition, on tiny ASGI apps (no Triton)."""

from __future__ import annotations

import hmac

import httpx
import pytest
from prometheus_client import generate_latest

from trtpipe.serve.api.metrics import FrontendMetrics
from trtpipe.serve.api.middleware import ApiKeyAuth, BodyLimit, load_api_keys


async def ok_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_every_route_but_liveness_needs_a_key_compared_in_constant_time(monkeypatch):
    compared = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append(b) or real(a, b))
    async with client(ApiKeyAuth(ok_app, ("alpha", "beta"), protect_metrics=False)) as c:
        assert (await c.get("/health/live")).status_code == 200
        assert (await c.get("/metrics")).status_code == 200
        r = await c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert (await c.get("/v1/models", headers={"Authorization": "Bearer alpha"})).status_code == 200
        compared.clear()
        assert (await c.get("/v1/models", headers={"Authorization": "Bearer beta"})).status_code == 200
        assert compared == [b"alpha", b"beta"]  # every key is compared: no early exit on a match
        assert (await c.get("/v1/models", headers={"Authorization": "Bearer "})).status_code == 401
        assert (await c.get("/v1/models", headers={"Authorization": "alpha"})).status_code == 401
    async with client(ApiKeyAuth(ok_app, ("alpha",), protect_metrics=True)) as c:
        assert (await c.get("/metrics")).status_code == 401
    async with client(ApiKeyAuth(ok_app, (), protect_metrics=True)) as c:
        assert (await c.get("/v1/models")).status_code == 200  # no keys configured: open


def test_keys_come_from_flags_env_and_file(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text("# ops keys\nfile-key\n\nflag-key\n")
    monkeypatch.setenv("TRTPIPE_API_KEYS", "env-1, env-2,")
    assert load_api_keys(("flag-key",), keys) == ("flag-key", "env-1", "env-2", "file-key")


async def test_bodies_over_the_limit_get_413_declared_or_streamed():
    async with client(BodyLimit(ok_app, 10)) as c:
        assert (await c.post("/x", content=b"12345")).text == "5"
        r = await c.post("/x", content=b"x" * 11)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        async def chunks():
            for _ in range(4):
                yield b"xxxx"

        from starlette.exceptions import HTTPException
        with pytest.raises(HTTPException):  # the app renders it (GenerationRoutes / FastAPI handler)
            await c.post("/x", content=chunks())


def test_vllm_aliases_are_exposed_with_their_exact_names_and_model_name_label():
    m = FrontendMetrics()
    mm = m.model("tiny")
    mm.ttft.observe(0.05)
    mm.generation_tokens.inc(3)
    mm.success["length"].inc()
    m.state.sources.append(lambda: [("trtpipe_num_requests_waiting", "waiting", {"model": "tiny"}, 2.0)])
    text = generate_latest(m.registry).decode()
    for line in ('vllm:time_to_first_token_seconds_bucket{le="0.06",model_name="tiny"} 1.0',
                 'trtpipe_time_to_first_token_seconds_bucket{le="0.06",model="tiny"} 1.0',
                 'vllm:generation_tokens_total{model_name="tiny"} 3.0',
                 'vllm:request_success_total{finished_reason="length",model_name="tiny"} 1.0',
                 'vllm:num_requests_waiting{model_name="tiny"} 2.0',
                 "# TYPE vllm:time_to_first_token_seconds histogram"):
        assert line in text, line
