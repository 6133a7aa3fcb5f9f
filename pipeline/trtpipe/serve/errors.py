"""Every error the frontend answers with: one closed set of named constructors over one type.

A client sees the OpenAI envelope `{"error": {"message", "type", "param", "code"}}` with an HTTP status. Which
`type`, `code` and status go together is decided here and nowhere else: call sites say what went wrong
(`invalid_parameter("stop", ...)`, `overloaded(...)`) and never choose a status by hand. `type` is stable and is
also the metrics label of `trtpipe_request_errors`.

    constructor                 status  type                   code
    invalid_parameter           400     invalid_request_error  None (param names the field)
    unsupported_parameter       400     invalid_request_error  None
    invalid_request             400     invalid_request_error  None (the body as a whole)
    context_too_long            400     invalid_request_error  context_length_exceeded
    previous_response_not_found 400     invalid_request_error  previous_response_not_found
    engine_rejected             400     invalid_request_error  engine_rejected_request
    unauthorized                401     invalid_request_error  invalid_api_key
    model_not_found             404     invalid_request_error  model_not_found
    response_not_found          404     invalid_request_error  response_not_found
    http_error                  4xx     invalid_request_error  not_found | method_not_allowed | request_too_large
    request_timeout             408     invalid_request_error  request_timeout
    request_too_large           413     invalid_request_error  request_too_large
    unsupported_media_type      415     invalid_request_error  unsupported_media_type
    headers_too_large           431     invalid_request_error  request_header_too_large
    overloaded                  429     rate_limit_error       rate_limit_exceeded (Retry-After)
    internal_error              500     server_error           internal_error
    engine_failed               5xx     server_error           engine_error
    shutting_down               503     service_unavailable    server_shutting_down
    engine_unavailable          503     service_unavailable    engine_unavailable (Retry-After)
    deadline_exceeded           504     timeout_error          deadline_exceeded
"""

from __future__ import annotations

INVALID, RATE_LIMIT, SERVER, UNAVAILABLE, TIMEOUT = (
    "invalid_request_error", "rate_limit_error", "server_error", "service_unavailable", "timeout_error")


class RequestError(Exception):
    """An error with an OpenAI envelope. Build one with the constructors below, never directly."""

    def __init__(self, message: str, *, param: str | None = None, type: str = INVALID, code: str | None = None,
                 status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message, self.param, self.type, self.code, self.status = message, param, type, code, status
        self.headers = headers

    def envelope(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# --- the client's request ------------------------------------------------------------------------------------
def invalid_parameter(param: str | None, message: str) -> RequestError:
    """A field the client can fix: the message names it in backticks, the rule and the value given."""
    return RequestError(message, param=param)


def unsupported_parameter(param: str) -> RequestError:
    return RequestError(f"`{param}` is not supported by this server", param=param)


def invalid_request(message: str) -> RequestError:
    """The request as a whole (not JSON, cut off), where no one field is at fault."""
    return RequestError(message)


def context_too_long(param: str, message: str) -> RequestError:
    return RequestError(message, param=param, code="context_length_exceeded")


def previous_response_not_found(response_id: str) -> RequestError:
    """/v1/responses: `previous_response_id` names no response this server process holds (OpenAI's 400)."""
    return RequestError(f"Previous response with id {response_id!r} not found: it was never stored (`store: false`), "
                        "was deleted or evicted, or is held by another API-server process. Send the whole "
                        "conversation as `input` instead.", param="previous_response_id",
                        code="previous_response_not_found")


def with_param(err: RequestError, param: str | None, message: str) -> RequestError:
    """The same error told in another API's names (a Chat Completions check behind /v1/responses)."""
    return RequestError(message, param=param, type=err.type, code=err.code, status=err.status, headers=err.headers)


def engine_rejected(detail: str) -> RequestError:
    """The engine model refused the request's inputs (the Python models' BadRequest). Validation should have
    caught it first; the engine's own words say what to change."""
    return RequestError(f"the engine refused the request: {detail}", code="engine_rejected_request")


def unauthorized() -> RequestError:
    return RequestError("Incorrect or missing API key: send `Authorization: Bearer <key>`.", code="invalid_api_key",
                        status=401, headers={"WWW-Authenticate": "Bearer"})


def model_not_found(name: str, available: list[str]) -> RequestError:
    return RequestError(f"The model `{name}` does not exist. Available: {available}", param="model",
                        code="model_not_found", status=404)


def response_not_found(response_id: str) -> RequestError:
    return RequestError(f"Response with id {response_id!r} not found: it was never stored (`store: false`), was "
                        "deleted or evicted, or is held by another API-server process", param="response_id",
                        code="response_not_found", status=404)


def request_too_large(max_bytes: int) -> RequestError:
    return RequestError(f"the request body is larger than {max_bytes} bytes", code="request_too_large", status=413)


def request_timeout(what: str, seconds: float) -> RequestError:
    return RequestError(f"the request did not send {what} within {seconds:g} s", code="request_timeout", status=408)


def unsupported_media_type(given: str) -> RequestError:
    return RequestError(f"the request body must be JSON: send `Content-Type: application/json`. Given: {given!r}",
                        code="unsupported_media_type", status=415)


def headers_too_large(max_headers: int, max_bytes: int) -> RequestError:
    return RequestError(f"the request's headers exceed this server's limits ({max_headers} headers, {max_bytes} "
                        "bytes with the request line)", code="request_header_too_large", status=431)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


def http_error(status: int, detail: str) -> RequestError:
    """What the router itself refuses (unknown route, wrong method, a body cut at the size limit)."""
    return RequestError(detail, status=status, code=_HTTP_CODES.get(status))


# --- the server's state --------------------------------------------------------------------------------------
def overloaded(what: str, retry_after_s: int) -> RequestError:
    return RequestError(f"the server is at capacity ({what}); retry after {retry_after_s} s", type=RATE_LIMIT,
                        code="rate_limit_exceeded", status=429, headers={"Retry-After": str(retry_after_s)})


def shutting_down(*, in_flight: bool = False) -> RequestError:
    """`in_flight`: the drain ended a request that had started, rather than refusing a new one."""
    message = ("the server is shutting down; the request was ended before it finished" if in_flight else
               "the server is shutting down and accepts no new requests")
    return RequestError(message, type=UNAVAILABLE, code="server_shutting_down", status=503)


def deadline_exceeded(seconds: float) -> RequestError:
    return RequestError(f"the request did not finish within its deadline of {seconds:g} s", type=TIMEOUT,
                        code="deadline_exceeded", status=504)


def engine_unavailable(detail: str) -> RequestError:
    return RequestError(f"the model server is unavailable: {detail}", type=UNAVAILABLE, code="engine_unavailable",
                        status=503, headers={"Retry-After": "1"})


def engine_failed(detail: str, status: int = 500) -> RequestError:
    return RequestError(f"the engine failed the request: {detail}", type=SERVER, code="engine_error", status=status)


def internal_error() -> RequestError:
    return RequestError("internal error while generating (see the server log)", type=SERVER, code="internal_error",
                        status=500)
