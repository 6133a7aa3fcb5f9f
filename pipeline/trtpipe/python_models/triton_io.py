"""The Triton side of a Python engine model: read a request's input tensors, send its responses.

Shared by every trtpipe Python model (model_repo/engine, model_repo/llm_api_engine). Triton's
`triton_python_backend_utils` is passed in by the model, so the package never imports it and the rest of
the adapter runs and is tested without Triton.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable, Iterable

from trtpipe.python_models.tensors import BAD_REQUEST_PREFIX, BadRequest
from trtpipe.repo.model_config import ENGINE_INPUTS

INPUT_NAMES = tuple(row[0] for row in ENGINE_INPUTS)


class TritonSender:
    def __init__(self, request: Any, pb_utils: Any):
        self._pb = pb_utils
        self._request = request
        self._sender = request.get_response_sender()
        # Only the outputs the client asked for (all of them when it named none). The stub would otherwise prune
        # the rest itself on the engine thread, dropping their numpy arrays without the GIL: the Python 3.12 stub
        # segfaults there (a request naming `outputs`, as the frontend's does).
        self._wanted = set(request.requested_output_names())

    def send(self, tensors, *, error=None, final=False):
        pb = self._pb
        flags = pb.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        if error is not None:
            response = pb.InferenceResponse(error=pb.TritonError(error))
        elif tensors is None:
            self._sender.send(flags=flags)
            return
        else:
            response = pb.InferenceResponse([pb.Tensor(k, v) for k, v in tensors.items() if k in self._wanted])
        self._sender.send(response, flags=flags)

    def is_cancelled(self):
        return self._request.is_cancelled()


def read_inputs(request: Any, names: Iterable[str], pb_utils: Any) -> dict:
    tensors = {}
    for name in names:
        t = pb_utils.get_input_tensor_by_name(request, name)
        if t is not None:
            tensors[name] = t.as_numpy()
    return tensors


def submit_requests(requests: Iterable[Any], loop: Any, decode: Callable[[str, dict], tuple], pb_utils: Any) -> None:
    """A Python engine model's execute(): each request is decoded (`decode(request_id, tensors)` ->
    (EngineRequest, RequestOptions)) and handed to its loop, or stopped (the `stop` input). A request that
    cannot be decoded gets its error and final flag at once; the others go on."""
    for request in requests:
        sender = TritonSender(request, pb_utils)
        tensors = read_inputs(request, INPUT_NAMES, pb_utils)
        stop = tensors.get("stop")
        if stop is not None and bool(stop.reshape(-1)[0]):
            loop.stop_request(request.request_id(), sender)
            continue
        try:
            engine_request, opts = decode(request.request_id() or uuid.uuid4().hex, tensors)
        except BadRequest as e:
            sender.send(None, error=BAD_REQUEST_PREFIX + str(e), final=True)
            continue
        loop.submit(engine_request, opts, sender)
