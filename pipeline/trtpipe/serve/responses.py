"""The ASGI side of a generation request: one response object that owns the request's lifetime.

It registers a `Ticket` (deadline, drain), watches the connection for a disconnect (and, when streaming, sends
SSE keep-alive comments when nothing was sent for a while), and maps how the request ended to what the client
sees: a JSON error with its status while nothing was sent yet, else an SSE error event and `[DONE]`.
A disconnect, a deadline or a drain cancels the request's task, and with it every Triton stream it holds.
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator, Awaitable, Callable

from starlette.responses import JSONResponse, Response

from trtpipe.serve.admission import Inflight, Ticket
from trtpipe.serve.chunks import DONE, KEEPALIVE, sse_error
from trtpipe.serve.triton_stream import EngineError, EngineUnavailable
from trtpipe.serve.validation import RequestError

log = logging.getLogger("trtpipe.serve")
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def as_request_error(e: Exception) -> RequestError:
    if isinstance(e, RequestError):
        return e
    if isinstance(e, EngineUnavailable):
        return RequestError(f"the model server is unavailable: {e}", type="service_unavailable",
                            code="engine_unavailable", status=503, headers={"Retry-After": "1"})
    if isinstance(e, EngineError):
        return RequestError(f"the engine failed the request: {e}", type="server_error", code="engine_error",
                            status=e.status)
    log.exception("unexpected error while serving a request", exc_info=e)
    return RequestError("internal error while generating (see the server log)", type="server_error",
                        code="internal_error", status=500)


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(err.envelope(), status_code=err.status, headers=err.headers)


class GenerationResponse(Response):
    """`body` is an async iterator of SSE chunks (stream) or an awaitable of the JSON body (not stream)."""

    def __init__(self, *, stream: bool, produce: Callable[[], AsyncIterator[bytes] | Awaitable[bytes]],
                 inflight: Inflight, deadline_s: float | None, keepalive_s: float | None,
                 on_error: Callable[[RequestError], None], on_done: Callable[[], None] = lambda: None):
        self.stream, self.produce, self.inflight, self.on_done = stream, produce, inflight, on_done
        self.deadline_s, self.keepalive_s, self.on_error = deadline_s, keepalive_s, on_error
        self.background = None
        self._started = False
        self._sending = False
        self._num_sent = 0

    async def _start(self, send, status: int = 200, headers=SSE_HEADERS) -> None:
        self._started = True
        await send({"type": "http.response.start", "status": status, "headers": headers})

    async def _watch(self, receive, send, ticket: Ticket) -> None:
        """Disconnect watcher; while streaming also the keep-alive sender (only when the stream is idle)."""
        last_seen = -1
        while True:
            if self.keepalive_s is None or not self.stream:
                message = await receive()
            else:
                try:
                    # wait_for, not asyncio.timeout(): that needs Python 3.11 (we support 3.10).
                    message = await asyncio.wait_for(receive(), self.keepalive_s)
                except asyncio.TimeoutError:
                    if self._num_sent == last_seen and not self._sending:
                        if not self._started:
                            await self._start(send)
                        await send({"type": "http.response.body", "body": KEEPALIVE, "more_body": True})
                    last_seen = self._num_sent
                    continue
            if message["type"] == "http.disconnect":
                ticket.client_gone()
                return

    async def __call__(self, scope, receive, send) -> None:
        task = asyncio.current_task()
        ticket = Ticket(task)
        self.inflight.add(ticket)
        ticket.set_deadline(self.deadline_s)
        watcher = asyncio.create_task(self._watch(receive, send, ticket))
        error: RequestError | None = None
        chunks = None
        try:
            if self.stream:
                chunks = self.produce()
                last = False
                async for chunk in chunks:
                    if not self._started:
                        await self._start(send)
                    # The chunk ending in [DONE] also ends the body, in the same write: a client that reads on
                    # after [DONE] to reuse the connection (the openai client does) does not wait for one more
                    # write, and the terminating chunk costs no send of its own.
                    last = chunk.endswith(DONE)
                    if last:
                        ticket.close()
                    self._sending = True
                    await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                    self._sending = False
                    self._num_sent += 1
                    if last:
                        break
                if not last:
                    ticket.close()
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
            else:
                body = await self.produce()
                ticket.close()
                await self._start(send, 200, [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())])
                await send({"type": "http.response.body", "body": body})
        except asyncio.CancelledError:
            if ticket.abort_error is None and not ticket.disconnected:
                raise  # the server is cancelling us (forced shutdown)
            if hasattr(task, "uncancel"):  # Python 3.11+ counts cancellations; 3.10 has nothing to undo
                task.uncancel()
            error = ticket.abort_error  # None: the client went away, nobody to answer
        except Exception as e:  # noqa: BLE001 - every failure becomes an error envelope, never a traceback
            error = as_request_error(e)
        finally:
            ticket.close()
            watcher.cancel()
            if chunks is not None:
                await chunks.aclose()  # runs its cleanup now: release admission, cancel Triton streams
            self.on_done()
            self.inflight.remove(ticket)
        if error is not None:
            self.on_error(error)
            await self._send_error(send, error)

    async def _send_error(self, send, error: RequestError) -> None:
        try:
            if not self._started:
                response = error_response(error)
                await self._start(send, error.status, response.raw_headers)
                await send({"type": "http.response.body", "body": response.body})
            else:
                await send({"type": "http.response.body", "body": sse_error(error) + DONE, "more_body": False})
        except Exception:  # noqa: BLE001 - the connection is gone; nothing left to tell
            pass
