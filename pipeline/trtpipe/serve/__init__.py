"""trtpipe serve: Triton on the model repository and the OpenAI-compatible frontend in front of it.

Four rooms, whose imports run one way (tests/unit/test_layers.py enforces it):

    process/        -> api/        -> openai/           -> engine_client/
    start and stop     HTTP: the      OpenAI semantics:     Triton's gRPC stream API:
    Triton and the     ASGI app,      validation, served    EngineCall -> TokenDelta... Final,
    API servers,       guards,        models, chat          one call per engine request,
    drain, shared      admission,     templates and text,   replicas, draft-target
    limits; never on   one request's  one choice's text     speculation; imports nothing
    a request's path   lifecycle,     stream, tools,        else from trtpipe
                       SSE/JSON,      reasoning, guides;
                       metrics        no HTTP, no gRPC

Every room may use the two shared modules: `protocol.py` (the OpenAI wire types) and `errors.py` (the closed
set of errors a client can get). One chat request: api/app.py (GenerationRoutes) -> openai/validation.py ->
api/frontend.py start_request -> api/lifecycle.py RequestLifecycle.run -> openai/choice_stream.py ->
engine_client/replicas.py -> engine_client/client.py, and back through api/chunks.py and api/response.py.
A /v1/responses request takes the same path: api/responses_routes.py -> openai/responses.py (translated into the
chat request, then validate_chat) -> the same lifecycle and response, with the sinks of api/response_events.py;
finished responses are kept by openai/response_store.py (bounded, per process).
"""
