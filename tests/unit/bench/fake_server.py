"""A local OpenAI-compatible server whose timing is known, to check the bench's numbers against.

Every streamed answer sends a role-only chunk at once (which must not count as the first token),
then content token k at exactly `ttft_s + k * itl_s` after the request arrived (absolute deadlines,
so sleep overshoot does not accumulate), then a finish chunk, the usage chunk, and [DONE].

Behaviour by model name: "fake" is well behaved; "no-usage" never reports usage; "flaky" answers
every second request with HTTP 500.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

METRICS_PAGE = """# HELP vllm:num_requests_waiting Requests waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="fake"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="fake"} 0.25
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0"} 3.0
vllm:e2e_request_latency_seconds_count 3.0
# TYPE vllm:request_success_total counter
vllm:request_success_total{finished_reason="length"} %d
process_cpu_seconds_total 1.5
"""


@dataclass
class FakeServerState:
    ttft_s: float = 0.050
    itl_s: float = 0.010
    num_tokens: int = 20
    bodies: list[dict] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    num_flaky_requests: int = 0
    num_finished: int = 0


def make_app(state: FakeServerState) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": "fake", "object": "model"}, {"id": "other", "object": "model"}]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(METRICS_PAGE % state.num_finished)

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        return await _answer(request, is_chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _answer(request, is_chat=False)

    async def _answer(request: Request, *, is_chat: bool):
        arrived = time.perf_counter()
        body = await request.json()
        state.bodies.append(body)
        state.auth_headers.append(request.headers.get("authorization"))
        model = body.get("model")
        if model == "flaky":
            state.num_flaky_requests += 1
            if state.num_flaky_requests % 2 == 0:
                return JSONResponse({"error": {"message": "injected failure", "type": "InternalError"}},
                                    status_code=500)
        prompt = body["messages"][0]["content"] if is_chat else body["prompt"]
        num_tokens = min(state.num_tokens, body.get("max_tokens") or state.num_tokens)
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": num_tokens,
                 "total_tokens": len(prompt.split()) + num_tokens}
        if not body.get("stream"):
            await asyncio.sleep(state.ttft_s + (num_tokens - 1) * state.itl_s)
            state.num_finished += 1
            choice = ({"message": {"role": "assistant", "content": "tok " * num_tokens}} if is_chat
                      else {"text": "tok " * num_tokens})
            return {"choices": [{"index": 0, "finish_reason": "length", **choice}], "usage": usage}
        send_usage = (body.get("stream_options") or {}).get("include_usage") and model != "no-usage"
        return StreamingResponse(_stream(arrived, num_tokens, is_chat, usage if send_usage else None),
                                 media_type="text/event-stream")

    async def _stream(arrived: float, num_tokens: int, is_chat: bool, usage: dict | None):
        if is_chat:
            yield _sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        for k in range(num_tokens):
            await asyncio.sleep(max(0.0, arrived + state.ttft_s + k * state.itl_s - time.perf_counter()))
            piece = {"delta": {"content": f"tok{k} "}} if is_chat else {"text": f"tok{k} "}
            yield _sse({"choices": [{"index": 0, **piece, "finish_reason": None}]})
        finish = {"delta": {}} if is_chat else {"text": ""}
        yield _sse({"choices": [{"index": 0, **finish, "finish_reason": "length"}]})
        if usage:
            yield _sse({"choices": [], "usage": usage})
        state.num_finished += 1
        yield "data: [DONE]\n\n"

    return app


def _sse(data: dict) -> str:
    return f"data: {json.dumps(data)}\n\n"


class FakeServer:
    """Runs the app with uvicorn in a background thread on 127.0.0.1 and an ephemeral port."""

    def __init__(self, state: FakeServerState | None = None):
        self.state = state or FakeServerState()
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(make_app(self.state), log_level="warning", lifespan="off", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("fake server did not start within 10 s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()
