"""A request whose task is cancelled (its client disconnected: serve/api/response.py) does not cancel its gRPC call
on a real Triton: the call is ended by a `stop` request and read to its status (engine_client/client.py). A gRPC
cancel races Triton 2.51's stream handler (tritonserver's SIGSEGV in ModelStreamInferHandler::Process)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from trtpipe.serve.engine_client import client as engine_client
from trtpipe.serve.engine_client.calls import EngineCall
from trtpipe.serve.engine_client.client import TritonEngineClient

pytestmark = pytest.mark.integration


def test_cancelling_a_request_ends_its_call_with_a_stop_request_not_a_grpc_cancel(triton):
    async def cancel_after_the_first_token() -> list:
        client = TritonEngineClient(triton.grpc_url)
        client._connect()
        calls, stream_infer = [], client._stream_infer

        def recording(request):  # the calls the client makes: the request's, then its `stop` request's
            calls.append(stream_infer(request))
            return calls[-1]

        client._stream_infer = recording
        first = asyncio.Event()

        async def consume() -> None:
            async for _ in client.generate("tiny-llama-engine", EngineCall([10, 20, 30, 40], 100, temperature=0.0)):
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 60)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        if engine_client._winding_down:  # none when the call was cancelled with the task
            await asyncio.wait(list(engine_client._winding_down), timeout=30)
        codes = [await call.code() for call in calls]
        await client.close()
        return codes

    assert asyncio.run(cancel_after_the_first_token()) == [grpc.StatusCode.OK, grpc.StatusCode.OK]
