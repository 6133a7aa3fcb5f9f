"""/v1/responses: create (POST, on the generation hot path), retrieve (GET) and delete (DELETE) a response.

A create goes the chat route's way: refused while draining, unknown model 404, the stored conversation of
`previous_response_id` looked up (400 when this process holds none), then openai/responses.py in a worker thread
(translation to the chat request, validate_chat: 400s in Responses terms), admission (429), and a
GenerationResponse (deadline, disconnect -> cancel, keep-alives) over a Responses sink (response_events.py). The
finished Response object is stored when `store` is true (openai/response_store.py: per process, bounded).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from trtpipe.serve import errors
from trtpipe.serve.api.frontend import Frontend
from trtpipe.serve.api.middleware import arrival_time
from trtpipe.serve.api.response import GenerationResponse
from trtpipe.serve.api.response_events import response_sink
from trtpipe.serve.openai.response_store import StoredResponse
from trtpipe.serve.openai.responses import PreparedResponse, prepare_response
from trtpipe.serve.protocol import ErrorResponse, ResponsesRequest

# GET's query parameters that replay a background response's stream or add fields: not implemented.
UNSUPPORTED_QUERY = ("stream", "starting_after", "include", "include[]", "include_obfuscation")


async def create_response(front: Frontend, req: ResponsesRequest, arrival: float) -> Response:
    front.check_accepting()
    model = front.served(req.model)
    previous = None
    if req.previous_response_id is not None:
        previous = front.responses.get(req.previous_response_id)
        if previous is None:
            raise errors.previous_response_not_found(req.previous_response_id)
    prepared: PreparedResponse = await front.prepare_with(prepare_response, req, model, previous)
    front.check_accepting()  # the drain may have begun meanwhile
    lifecycle = front.start_request(model, prepared.gen, arrival)

    def on_end(response: dict, num_output_chars: int) -> None:
        if req.store:
            front.responses.put(StoredResponse(response, prepared.context,
                                               prepared.num_context_chars + num_output_chars))

    sink = response_sink(req.stream, model.name, prepared.settings, on_end, lambda text: len(model.text.encode(text)))
    s = front.settings
    return GenerationResponse(lifecycle, sink, inflight=front.inflight, deadline_s=s.request_timeout_s,
                              keepalive_s=s.keepalive_s if req.stream else None)


def _check_query(request: Request) -> None:
    for name in UNSUPPORTED_QUERY:
        if name in request.query_params:
            raise errors.unsupported_parameter(name.removesuffix("[]"))


def add_responses_routes(app: FastAPI, front: Frontend) -> None:
    not_found = {404: {"model": ErrorResponse, "description": "no stored response with this id in this process"}}

    @app.post("/v1/responses", tags=["openai"], response_model=None,
              responses={200: {"description": "the Response object, or with `stream: true` an SSE stream of "
                                              "Responses events ending with response.completed",
                               "content": {"text/event-stream": {}}},
                         400: {"model": ErrorResponse}, 404: {"model": ErrorResponse},
                         429: {"model": ErrorResponse}})
    async def create(req: ResponsesRequest, request: Request) -> Response:
        # Served by GenerationRoutes in front of FastAPI (app.py); this route documents it and is the same code.
        return await create_response(front, req, arrival_time(request.scope))

    @app.get("/v1/responses/{response_id}", tags=["openai"], response_model=None, responses=not_found)
    async def retrieve(response_id: str, request: Request) -> Response:
        _check_query(request)
        stored = front.responses.get(response_id)
        if stored is None:
            raise errors.response_not_found(response_id)
        return JSONResponse(stored.response)

    @app.delete("/v1/responses/{response_id}", tags=["openai"], response_model=None, responses=not_found)
    async def delete(response_id: str) -> Response:
        if not front.responses.delete(response_id):
            raise errors.response_not_found(response_id)
        return JSONResponse({"id": response_id, "object": "response", "deleted": True})
