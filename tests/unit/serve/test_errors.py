"""The frontend's closed error set: each named constructor's status, type, code and headers, and no other
place in serve/ that builds a RequestError by hand."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from trtpipe.serve import errors
from trtpipe.serve.api.response import as_request_error
from trtpipe.serve.engine_client.calls import EngineError, EngineRejected, EngineUnavailable, EngineUnreachable
from trtpipe.serve.engine_client.client import _error_from_message

SERVE = Path(errors.__file__).parent


@pytest.mark.parametrize("err, status, type_, code, param, headers", [
    (errors.invalid_parameter("stop", "`stop` ..."), 400, "invalid_request_error", None, "stop", None),
    (errors.unsupported_parameter("suffix"), 400, "invalid_request_error", None, "suffix", None),
    (errors.invalid_request("the request body is not valid JSON"), 400, "invalid_request_error", None, None, None),
    (errors.context_too_long("messages", "..."), 400, "invalid_request_error", "context_length_exceeded", "messages",
     None),
    (errors.engine_rejected("input 'x' ..."), 400, "invalid_request_error", "engine_rejected_request", None, None),
    (errors.unauthorized(), 401, "invalid_request_error", "invalid_api_key", None, {"WWW-Authenticate": "Bearer"}),
    (errors.model_not_found("x", ["tiny-llama"]), 404, "invalid_request_error", "model_not_found", "model", None),
    (errors.previous_response_not_found("resp_1"), 400, "invalid_request_error", "previous_response_not_found",
     "previous_response_id", None),
    (errors.response_not_found("resp_1"), 404, "invalid_request_error", "response_not_found", "response_id", None),
    (errors.with_param(errors.context_too_long("messages", "m"), "input", "i"), 400, "invalid_request_error",
     "context_length_exceeded", "input", None),
    (errors.http_error(405, "Method Not Allowed"), 405, "invalid_request_error", "method_not_allowed", None, None),
    (errors.request_too_large(10), 413, "invalid_request_error", "request_too_large", None, None),
    (errors.overloaded("1 running, 0 waiting", 2), 429, "rate_limit_error", "rate_limit_exceeded", None,
     {"Retry-After": "2"}),
    (errors.internal_error(), 500, "server_error", "internal_error", None, None),
    (errors.engine_failed("boom", 504), 504, "server_error", "engine_error", None, None),
    (errors.shutting_down(), 503, "service_unavailable", "server_shutting_down", None, None),
    (errors.engine_unavailable("not loaded"), 503, "service_unavailable", "engine_unavailable", None,
     {"Retry-After": "1"}),
    (errors.deadline_exceeded(2.5), 504, "timeout_error", "deadline_exceeded", None, None),
])
def test_each_named_error_has_its_fixed_status_type_code_and_headers(err, status, type_, code, param, headers):
    assert (err.status, err.type, err.code, err.param, err.headers) == (status, type_, code, param, headers)
    assert err.envelope() == {"error": {"message": err.message, "type": type_, "param": param, "code": code}}


def test_messages_name_what_happened_and_the_limit():
    assert errors.deadline_exceeded(2.5).message == "the request did not finish within its deadline of 2.5 s"
    assert errors.shutting_down(in_flight=True).message == \
        "the server is shutting down; the request was ended before it finished"
    assert errors.request_too_large(10).message == "the request body is larger than 10 bytes"
    assert errors.unsupported_parameter("logit_bias").message == "`logit_bias` is not supported by this server"


def test_no_module_in_serve_builds_a_request_error_by_hand():
    by_hand = []
    for path in sorted(SERVE.rglob("*.py")):
        if path == SERVE / "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "RequestError":
                by_hand.append(f"{path.relative_to(SERVE)}:{node.lineno}")
    assert by_hand == []


@pytest.mark.parametrize("engine_error, status, code", [
    (EngineRejected("input 'seed' must hold one value per request"), 400, "engine_rejected_request"),
    (EngineUnreachable("Triton is unreachable"), 503, "engine_unavailable"),
    (EngineUnavailable("unknown model"), 503, "engine_unavailable"),
    (EngineError("Triton did not answer in time", status=504), 504, "engine_error"),
])
def test_engine_errors_map_onto_the_same_set(engine_error, status, code):
    err = as_request_error(engine_error)
    assert (err.status, err.code) == (status, code)
    assert str(engine_error) in err.message


def test_a_python_models_bad_request_reaches_the_client_as_a_400_with_the_engines_words():
    # What Triton hands the stream when a trtpipe Python model refuses a request (python_models/triton_io.py).
    engine_error = _error_from_message("bad request: input 'seed' must hold one value per request, got shape [2]")
    assert isinstance(engine_error, EngineRejected)
    err = as_request_error(engine_error)
    assert (err.status, err.type, err.code) == (400, "invalid_request_error", "engine_rejected_request")
    assert err.message == "the engine refused the request: input 'seed' must hold one value per request, got shape [2]"
    # Any other engine message stays a server-side failure.
    assert (as_request_error(_error_from_message("CUDA out of memory")).status) == 500


def test_the_python_models_and_the_engine_client_agree_on_the_bad_request_prefix():
    from trtpipe.python_models import tensors
    from trtpipe.serve.engine_client import calls

    assert tensors.BAD_REQUEST_PREFIX == calls.BAD_REQUEST_PREFIX == "bad request: "
