"""The OpenAI-compatible frontend: FastAPI app over the registry, the Triton replicas and the metrics.

A generation request goes: body-size and API-key guards (middleware.py) -> GenerationRoutes (pydantic
parsing) -> openai/validation.py (400 naming the parameter, before Triton is called) -> Frontend.start_request:
a RequestLifecycle, admitted or queued (429 beyond the bounds; lifecycle.py) -> a GenerationResponse that owns
the connection (deadline, disconnect, drain, keep-alives; response.py) and sends what the lifecycle's one loop
gives its sink (SSE chunks or a JSON body; chunks.py). /v1/responses takes the same path through its own
translation and sinks (responses_routes.py). Everything else (models, health, metrics, OpenAPI, GET and DELETE of
stored responses) is plain FastAPI; every error is an OpenAI envelope from the closed set in serve/errors.py.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from trtpipe.serve import errors
from trtpipe.serve.api.chunks import sink_for
from trtpipe.serve.api.frontend import Frontend
from trtpipe.serve.api.middleware import ApiKeyAuth, BodyLimit, arrival_time
from trtpipe.serve.api.response import GenerationResponse, as_request_error, error_response
from trtpipe.serve.api.responses_routes import add_responses_routes, create_response
from trtpipe.serve.engine_client.speculation import SpeculationConfig
from trtpipe.serve.errors import RequestError
from trtpipe.serve.openai.response_store import MAX_STORED_RESPONSE_CHARS, MAX_STORED_RESPONSES
from trtpipe.serve.openai.served_models import ServedModel
from trtpipe.serve.openai.validation import check_prompt_size
from trtpipe.serve.protocol import (ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
                                    CompletionRequest, CompletionResponse, ErrorResponse, ModelCard, ModelList,
                                    ResponsesRequest)
from trtpipe.serve.protocol import now as unix_now

log = logging.getLogger("trtpipe.serve")


@dataclass(frozen=True)
class FrontendSettings:
    repo: Path
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_urls: tuple[str, ...] = ()  # replicas; empty: just triton_grpc_url
    chat_template: str | None = None
    max_running: int = 256  # per model, also capped by the model's spec (max_concurrency)
    max_waiting: int = 512  # per model, also capped by the model's spec (max_queued)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    protect_metrics: bool = False
    request_timeout_s: float | None = 600.0
    keepalive_s: float | None = 15.0
    max_body_bytes: int = 4 * 1024 * 1024
    retry_after_s: int = 1
    health_interval_s: float = 2.0
    canary_interval_s: float = 30.0
    health_timeout_s: float = 10.0
    speculation: SpeculationConfig = SpeculationConfig()
    # model -> draft model, beside (or instead of) the drafts named in the models' specs
    draft_models: tuple[tuple[str, str], ...] = ()
    default_max_draft_len: int = 4
    # Browser origins allowed to call the API (CORS). Empty: CORS is off, browsers refuse cross-site calls.
    allowed_origins: tuple[str, ...] = ()
    # /v1/responses `store: true`: kept in memory by each API-server process, least recently used out beyond either
    # bound (openai/response_store.py).
    max_stored_responses: int = MAX_STORED_RESPONSES
    max_stored_response_chars: int = MAX_STORED_RESPONSE_CHARS

    @property
    def replica_urls(self) -> tuple[str, ...]:
        return self.triton_urls or (self.triton_grpc_url,)


_ERRORS = {400: ErrorResponse, 401: ErrorResponse, 404: ErrorResponse, 413: ErrorResponse, 429: ErrorResponse,
           503: ErrorResponse, 504: ErrorResponse}


def _doc_responses(model) -> dict:
    responses = {code: {"model": m, "description": "OpenAI error envelope"} for code, m in _ERRORS.items()}
    responses[200] = {"model": model, "description": "JSON, or with `stream: true` an SSE stream of chunks "
                      "ending with `data: [DONE]`", "content": {"text/event-stream": {}}}
    return responses


def create_app(settings: FrontendSettings, limits=None) -> FastAPI:
    """`limits`: the admission counts shared by the API-server processes (serve.process.shared_limits); None: one
    process."""
    front = Frontend(settings, limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await front.start()
        try:
            yield
        finally:
            await front.stop()

    app = FrontendApp(title="trtpipe", version="1", lifespan=lifespan,
                      description="OpenAI-compatible frontend over Triton Inference Server (TensorRT-LLM interface)")
    app.state.frontend = front
    _add_error_handlers(app, front)
    _add_health_routes(app, front)
    _add_openai_routes(app, front)
    add_responses_routes(app, front)
    app.add_middleware(ApiKeyAuth, keys=settings.api_keys, protect_metrics=settings.protect_metrics)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    # The same guards, in the same order, in front of the generation routes (see FrontendApp).
    app.generation = BodyLimit(ApiKeyAuth(GenerationRoutes(super(FrontendApp, app).__call__, front),
                                          keys=settings.api_keys, protect_metrics=settings.protect_metrics),
                               max_bytes=settings.max_body_bytes)
    if settings.allowed_origins:  # outermost, so that a preflight is answered before the key check
        cors = dict(allow_origins=list(settings.allowed_origins), allow_methods=["GET", "POST", "HEAD", "DELETE"],
                    allow_headers=["authorization", "content-type"], max_age=600)
        app.add_middleware(CORSMiddleware, **cors)
        app.generation = CORSMiddleware(app.generation, **cors)
    return app


def _add_error_handlers(app: FastAPI, front: Frontend) -> None:
    @app.exception_handler(RequestError)
    async def _request_error(request: Request, err: RequestError):
        front.metrics.error("", err.type, err.status)
        return error_response(err)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        err = validation_error(exc.errors())
        front.metrics.error("", err.type, err.status)
        return error_response(err)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return error_response(errors.http_error(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        return error_response(as_request_error(exc))  # logged there; never a traceback to the client


def _add_health_routes(app: FastAPI, front: Frontend) -> None:
    @app.get("/health/live", tags=["health"])
    async def live() -> dict:
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"],
                   responses={503: {"description": "not ready"}})
    async def ready() -> Response:
        ok, detail = front.readiness()
        return JSONResponse({"ready": ok, **detail}, status_code=200 if ok else 503)

    @app.get("/health", tags=["health"],
                   responses={503: {"description": "no engine answers"}})
    async def health() -> Response:
        """vLLM's and trtllm-serve's route (GuideLLM and others probe it): 200 while an engine answers."""
        ok = front.pool.any_healthy
        return JSONResponse({"status": "healthy" if ok else "unhealthy"}, status_code=200 if ok else 503)

    # HEAD answers as GET does (load balancers and probes often ask with HEAD); out of the API document, where it
    # would repeat each GET under the same operation id.
    for path, endpoint in (("/health/live", live), ("/health/ready", ready), ("/health", health)):
        app.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False)

    @app.get("/metrics", tags=["health"])
    async def prometheus() -> Response:
        return Response(generate_latest(front.metrics.exposition), media_type=CONTENT_TYPE_LATEST)


def _add_openai_routes(app: FastAPI, front: Frontend) -> None:
    def card(m: ServedModel) -> ModelCard:
        draft = front.draft_for(m)
        return ModelCard(id=m.name, created=unix_now(), root=m.name, max_model_len=m.spec.max_seq_len,
                         trtpipe={"version": m.version, "backend": m.manifest.backend,
                                  "engine_key": m.manifest.engine_key, "created_at": m.manifest.created_at,
                                  "system_fingerprint": m.manifest.fingerprint,
                                  "draft_model": draft[0].name if draft else None,
                                  "max_tokens": {"default": m.spec.default_max_tokens, "max": m.spec.max_max_tokens}})

    @app.get("/v1/models", response_model=ModelList, tags=["openai"])
    async def list_models() -> ModelList:
        return ModelList(data=[card(m) for m in front.registry.all()])

    @app.get("/v1/models/{model_id}", response_model=ModelCard, tags=["openai"],
             responses={404: {"model": ErrorResponse}})
    async def get_model(model_id: str) -> ModelCard:
        return card(front.served(model_id))

    @app.post("/v1/chat/completions", tags=["openai"], response_model=None,
              responses=_doc_responses(ChatCompletionResponse | ChatCompletionChunk))
    async def chat(req: ChatCompletionRequest, request: Request) -> Response:
        # Served by GenerationRoutes in front of FastAPI; this route documents it and is the same code.
        return await generation(front, req, chat=True, arrival=arrival_time(request.scope))

    @app.post("/v1/completions", tags=["openai"], response_model=None,
              responses=_doc_responses(CompletionResponse))
    async def completions(req: CompletionRequest, request: Request) -> Response:
        return await generation(front, req, chat=False, arrival=arrival_time(request.scope))


class FrontendApp(FastAPI):
    """FastAPI, except that the generation routes go straight to BodyLimit -> ApiKeyAuth -> GenerationRoutes.

    NOTE: FastAPI's stack (telemetry, its body limit, ServerErrorMiddleware, ExceptionMiddleware) wraps `send`
    once per layer, so each streamed chunk paid several coroutine calls, and each resumption of the request's
    task resumed every layer. GenerationRoutes turns every failure into an error envelope itself, so nothing
    those layers do is needed there."""

    generation = None  # set by create_app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] in GenerationRoutes.ROUTES and scope["method"] == "POST":
            return await self.generation(scope, receive, send)
        return await super().__call__(scope, receive, send)


async def generation(front: Frontend, req, *, chat: bool, arrival: float) -> Response:
    """A parsed request -> its response: refused (draining, unknown model, invalid, 429), or admitted or queued."""
    front.check_accepting()
    model = front.served(req.model)
    check_prompt_size(req, model, chat=chat)  # on the raw text, before any of it is tokenized
    gen = await front.prepare(model, req, chat=chat)
    front.check_accepting()  # the drain may have begun meanwhile
    lifecycle = front.start_request(model, gen, arrival)
    s = front.settings
    return GenerationResponse(lifecycle, sink_for(req, model, gen, chat=chat), inflight=front.inflight,
                              deadline_s=s.request_timeout_s, keepalive_s=s.keepalive_s if req.stream else None)


async def _chat(front: Frontend, req, arrival: float) -> Response:
    return await generation(front, req, chat=True, arrival=arrival)


async def _completion(front: Frontend, req, arrival: float) -> Response:
    return await generation(front, req, chat=False, arrival=arrival)


class GenerationRoutes:
    """POST /v1/chat/completions, /v1/completions and /v1/responses straight from ASGI, ahead of FastAPI's router.

    NOTE: the hot path skips FastAPI's routing, dependency solving and the two exception-handling wrappers it
    puts around `send` (one Python call each per streamed chunk). Parsing, validation and the response are
    the same functions the FastAPI routes above call, so the OpenAPI document stays accurate."""

    # path -> (request model, handler(front, parsed request, arrival time) -> response)
    ROUTES = {"/v1/chat/completions": (ChatCompletionRequest, _chat), "/v1/completions": (CompletionRequest, _completion),
              "/v1/responses": (ResponsesRequest, create_response)}

    def __init__(self, app, front: Frontend):
        self.app, self.front = app, front

    async def __call__(self, scope, receive, send):
        route = self.ROUTES.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if route is None:
            return await self.app(scope, receive, send)
        request_model, handler = route
        try:
            _require_json(scope)
            body = await _read_body(receive)
            try:
                req = request_model.model_validate_json(body)
            except ValidationError as e:
                raise validation_error(e.errors(include_url=False)) from None
            response = await handler(self.front, req, arrival_time(scope))
        except Exception as e:  # noqa: BLE001 - every failure is an envelope
            err = as_request_error(errors.http_error(e.status_code, str(e.detail))
                                   if isinstance(e, StarletteHTTPException) else e)
            self.front.metrics.error("", err.type, err.status)
            response = error_response(err)
        await response(scope, receive, send)


def _require_json(scope) -> None:
    """A body that is not declared JSON is refused before it is read: a cross-site form or `text/plain` post (which
    a browser sends without asking the server first) cannot run a completion."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            if value.split(b";")[0].strip().lower() == b"application/json":
                return
            raise errors.unsupported_media_type(value.decode("latin-1"))
    raise errors.unsupported_media_type("")


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.invalid_request("the client disconnected while sending the request")
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _is_union_tag(part) -> bool:
    """pydantic names the union member that failed in the location ('str', 'list[int]', ...)."""
    return isinstance(part, str) and (part in ("str", "int", "float", "bool", "list", "dict") or "[" in part)


def validation_error(problems: list[dict]) -> RequestError:
    """pydantic's errors -> one 400 naming the parameter (`messages.0.role`), the rule and the value given."""
    first = problems[0]
    if first["type"] in ("json_invalid", "json_type"):
        return errors.invalid_request("the request body is not valid JSON")
    loc = [p for p in first["loc"] if p != "body"]
    union = any(_is_union_tag(p) for p in loc)
    if union:
        loc = loc[:next(i for i, p in enumerate(loc) if _is_union_tag(p))]
    param = ".".join(str(p) for p in loc) or None
    given = repr(first.get("input"))[:80] if first["type"] != "missing" else None
    if union:
        message = f"`{param}` has an invalid type or value" + (f". Given: {given}" if given else "")
    else:
        message = (f"`{param}`: " if param else "the request body: ") + first["msg"] + (
            f". Given: {given}" if given else "")
    return errors.invalid_parameter(param, message)
