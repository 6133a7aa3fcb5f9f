"""The OpenAI-compatible frontend: FastAPI routes over the registry, the Triton client and the metrics."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from trtpipe.serve.admission import Admission
from trtpipe.serve.generate import ChoiceDone, TextDelta, generate_choice, now
from trtpipe.serve.metrics import FrontendMetrics, inc, observe
from trtpipe.serve.protocol import (ChatCompletionRequest, CompletionRequest, ErrorDetail, ErrorResponse,
                                    ModelCard, ModelList, completion_id)
from trtpipe.serve.protocol import now as unix_now
from trtpipe.serve.registry import ModelRegistry, ServedModel
from trtpipe.serve.triton_stream import EngineError, TritonEngineClient
from trtpipe.serve.validation import Generation, RequestError, validate_chat, validate_completion


@dataclass(frozen=True)
class FrontendSettings:
    repo: Path
    triton_grpc_url: str = "127.0.0.1:8001"
    chat_template: str | None = None
    max_running: int = 256
    max_waiting: int = 512
    api_keys: tuple[str, ...] = field(default=(), repr=False)


def error_response(err: RequestError) -> JSONResponse:
    body = ErrorResponse(error=ErrorDetail(message=err.message, type=err.type, param=err.param, code=err.code))
    headers = {"Retry-After": "1"} if err.status == 429 else None
    return JSONResponse(body.model_dump(), status_code=err.status, headers=headers)


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


def create_app(settings: FrontendSettings) -> FastAPI:
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        if "client" in state:
            await state["client"].close()

    app = FastAPI(title="trtpipe", description="OpenAI-compatible frontend over Triton Inference Server",
                  lifespan=lifespan)
    registry = ModelRegistry(settings.repo, settings.chat_template)
    metrics = FrontendMetrics()
    admission = Admission(settings.max_running, settings.max_waiting)

    def client() -> TritonEngineClient:
        # Created lazily inside the running event loop (grpc.aio channels bind to it).
        if "client" not in state:
            state["client"] = TritonEngineClient(settings.triton_grpc_url)
        return state["client"]

    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = [str(p) for p in first["loc"] if p != "body"]
        param = ".".join(loc) or None
        if first["type"] == "json_invalid":
            return error_response(RequestError("the request body is not valid JSON", param=None))
        return error_response(RequestError(f"`{param}`: {first['msg']}", param=param))

    def served(name: str) -> ServedModel:
        model = registry.get(name)
        if model is None:
            raise RequestError(f"The model `{name}` does not exist. Available: {registry.names()}", param="model",
                               type="invalid_request_error", code="model_not_found", status=404)
        return model

    @app.get("/health/live")
    async def live() -> dict:
        return {"status": "live"}

    @app.get("/health/ready")
    async def ready() -> Response:
        models = registry.all()
        ok = bool(models) and all([await client().is_ready(m.engine_model) for m in models])
        return JSONResponse({"ready": ok}, status_code=200 if ok else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def card(m: ServedModel) -> ModelCard:
        return ModelCard(id=m.name, created=unix_now(), root=m.name, max_model_len=m.spec.max_seq_len,
                         trtpipe={"version": m.version, "backend": m.manifest.backend,
                                  "engine_key": m.manifest.engine_key, "created_at": m.manifest.created_at,
                                  "system_fingerprint": m.manifest.fingerprint})

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> ModelList:
        return ModelList(data=[card(m) for m in registry.all()])

    @app.get("/v1/models/{model_id}", response_model=ModelCard)
    async def get_model(model_id: str) -> ModelCard:
        return card(served(model_id))

    @app.post("/v1/chat/completions")
    async def chat(req: ChatCompletionRequest, request: Request):
        model = served(req.model)
        return await _respond(request, model, validate_chat(req, model), chat=True, stream=req.stream,
                              include_usage=bool(req.stream_options and req.stream_options.include_usage))

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request):
        model = served(req.model)
        gen = validate_completion(req, model)
        return await _respond(request, model, gen, chat=False, stream=req.stream,
                              include_usage=bool(req.stream_options and req.stream_options.include_usage),
                              echo=gen.prompt_text if req.echo else None)

    async def _events(model: ServedModel, gen: Generation) -> AsyncIterator[TextDelta | ChoiceDone]:
        """All n choices merged into one stream, with latency metrics taken as the client sees them."""
        t_start, t_last, first = now(), None, True
        async with admission.slot():
            observe([metrics.queue_time], model.name, now() - t_start)
            inc(metrics.running, model.name)
            try:
                async for ev in _merge([generate_choice(client(), model, gen, i) for i in range(gen.n)]):
                    if isinstance(ev, TextDelta):
                        t = now()
                        if first:
                            observe(metrics.ttft, model.name, t - t_start)
                            first = False
                        elif t_last is not None:
                            observe(metrics.itl, model.name, t - t_last)
                        t_last = t
                    else:
                        inc(metrics.prompt_tokens, model.name, ev.prompt_tokens if ev.index == 0 else 0)
                        inc(metrics.generation_tokens, model.name, ev.completion_tokens)
                        metrics.requests.labels(model.name, "ok", ev.finish_reason).inc()
                        if ev.completion_tokens > 1 and t_last is not None and not first:
                            observe(metrics.tpot, model.name, (t_last - t_start) / ev.completion_tokens)
                    yield ev
                observe(metrics.e2e, model.name, now() - t_start)
            finally:
                inc(metrics.running, model.name, -1)

    async def _respond(request: Request, model: ServedModel, gen: Generation, *, chat: bool, stream: bool,
                       include_usage: bool, echo: str | None = None):
        rid = completion_id("chatcmpl" if chat else "cmpl")
        created, fp = unix_now(), model.manifest.fingerprint
        obj = "chat.completion" if chat else "text_completion"
        if not stream:
            texts, done = [""] * gen.n, {}
            try:
                async for ev in _events(model, gen):
                    if isinstance(ev, TextDelta):
                        texts[ev.index] += ev.text
                    else:
                        done[ev.index] = ev
            except EngineError as e:
                metrics.errors.labels(model.name, "engine_error").inc()
                raise RequestError(f"the engine failed the request: {e}", type="server_error",
                                   status=e.status) from None
            usage = _usage(done)
            if chat:
                choices = [{"index": i, "message": {"role": "assistant", "content": texts[i]},
                            "logprobs": None, "finish_reason": done[i].finish_reason} for i in range(gen.n)]
            else:
                choices = [{"index": i, "text": (echo or "") + texts[i], "logprobs": None,
                            "finish_reason": done[i].finish_reason} for i in range(gen.n)]
            return JSONResponse({"id": rid, "object": obj, "created": created, "model": model.name,
                                 "system_fingerprint": fp, "choices": choices, "usage": usage})

        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(choices: list, usage=None) -> str:
            body = {"id": rid, "object": chunk_obj, "created": created, "model": model.name,
                    "system_fingerprint": fp, "choices": choices}
            if include_usage:
                body["usage"] = usage
            return _sse(body)

        async def body() -> AsyncIterator[str]:
            started: set[int] = set()
            done: dict[int, ChoiceDone] = {}
            try:
                if echo:
                    for i in range(gen.n):
                        yield chunk([{"index": i, "text": echo, "logprobs": None, "finish_reason": None}])
                async for ev in _events(model, gen):
                    if isinstance(ev, TextDelta):
                        if chat:
                            delta = {"content": ev.text}
                            if ev.index not in started:
                                # NOTE: the role rides on the first content chunk: no content-less first chunk.
                                delta = {"role": "assistant", "content": ev.text}
                            started.add(ev.index)
                            yield chunk([{"index": ev.index, "delta": delta, "logprobs": None, "finish_reason": None}])
                        else:
                            yield chunk([{"index": ev.index, "text": ev.text, "logprobs": None, "finish_reason": None}])
                    else:
                        done[ev.index] = ev
                        if chat:
                            delta = {} if ev.index in started else {"role": "assistant", "content": ""}
                            yield chunk([{"index": ev.index, "delta": delta, "logprobs": None,
                                          "finish_reason": ev.finish_reason}])
                        else:
                            yield chunk([{"index": ev.index, "text": "", "logprobs": None,
                                          "finish_reason": ev.finish_reason}])
                if include_usage:
                    yield chunk([], _usage(done))
            except EngineError as e:
                metrics.errors.labels(model.name, "engine_error").inc()
                err = ErrorResponse(error=ErrorDetail(message=f"the engine failed the request: {e}",
                                                      type="server_error", code=str(e.status)))
                yield _sse(err.model_dump())
            except RequestError as e:
                yield _sse(ErrorResponse(error=ErrorDetail(message=e.message, type=e.type, param=e.param,
                                                           code=e.code)).model_dump())
            yield "data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    return app


def _usage(done: dict[int, ChoiceDone]) -> dict:
    prompt = done[0].prompt_tokens if done else 0
    completion = sum(d.completion_tokens for d in done.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _merge(streams: list[AsyncIterator]) -> AsyncIterator:
    """Interleave several async streams; closing the merged stream closes (and so cancels) every input."""
    if len(streams) == 1:
        async for item in streams[0]:
            yield item
        return
    queue: asyncio.Queue = asyncio.Queue()
    end = object()

    async def pump(s):
        try:
            async for item in s:
                await queue.put(item)
        except Exception as e:  # noqa: BLE001 - re-raised in the consumer
            await queue.put(e)
        finally:
            await queue.put(end)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is end:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for t in tasks:
            t.cancel()
