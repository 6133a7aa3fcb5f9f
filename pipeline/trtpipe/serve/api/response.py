"""The ASGI side of a generation request: one response object that owns the connection while it is served.

It registers a `Ticket` (deadline, drain), watches the connection for a disconnect (and, when streaming, sends
SSE keep-alive comments when nothing was sent for a while), sends what the request's lifecycle produces, and
maps how the request ended to what the client sees: a JSON error with its status while nothing was sent yet,
else the sink's last SSE bytes (chat: an error chunk and `[DONE]`; responses: `error` and `response.failed`).
A disconnect, a deadline or a drain cancels the request's task, and with it every Triton stream it holds.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.responses import JSONResponse, Response

from trtpipe.serve import errors
from trtpipe.serve.api.admission import Inflight, Ticket
from trtpipe.serve.api.chunks import DONE, KEEPALIVE
from trtpipe.serve.api.lifecycle import RequestLifecycle, Sink
from trtpipe.serve.engine_client.calls import EngineError, EngineRejected, EngineUnavailable
from trtpipe.serve.errors import RequestError

log = logging.getLogger("trtpipe.serve")
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]


def as_request_error(e: Exception) -> RequestError:
    """Any exception met while serving -> the error the client gets (logged when it is our own bug)."""
    if isinstance(e, RequestError):
        return e
    if isinstance(e, EngineRejected):
        return errors.engine_rejected(str(e))
    if isinstance(e, EngineUnavailable):
        return errors.engine_unavailable(str(e))
    if isinstance(e, EngineError):
        return errors.engine_failed(str(e), e.status)
    log.exception("unexpected error while serving a request", exc_info=e)
    return errors.internal_error()


def error_response(err: RequestError) -> JSONResponse:
    return JSONResponse(err.envelope(), status_code=err.status, headers=err.headers)


class GenerationResponse(Response):
    """Sends `lifecycle.run(sink)`: SSE chunks as they come (stream), or the one JSON body it ends with."""

    def __init__(self, lifecycle: RequestLifecycle, sink: Sink, *, inflight: Inflight, deadline_s: float | None,
                 keepalive_s: float | None):
        self.lifecycle, self.sink, self.inflight = lifecycle, sink, inflight
        self.stream = sink.streams
        self.deadline_s, self.keepalive_s = deadline_s, keepalive_s
        self.background = None
        self._started = False
        self._sending = False
        self._num_sent = 0

    async def __call__(self, scope, receive, send) -> None:
        task = asyncio.current_task()
        ticket = Ticket(task)
        self.inflight.add(ticket)
        ticket.set_deadline(self.deadline_s)
        watcher = asyncio.create_task(self._watch(receive, send, ticket))
        error: RequestError | None = None
        chunks = self.lifecycle.run(self.sink)
        try:
            await (self._send_stream(send, chunks, ticket) if self.stream else self._send_json(send, chunks, ticket))
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
            await chunks.aclose()  # runs its cleanup now: release admission, cancel Triton streams
            self.lifecycle.release()
            self.inflight.remove(ticket)
        if error is not None:
            self.lifecycle.record_error(error)
            await self._send_error(send, error)

    async def _send_stream(self, send, chunks, ticket: Ticket) -> None:
        async for chunk in chunks:
            if not self._started:
                await self._start(send)
            # The chunk ending in [DONE] also ends the body, in the same write: a client that reads on after
            # [DONE] to reuse the connection (the openai client does) does not wait for one more write, and the
            # terminating chunk costs no send of its own.
            last = chunk.endswith(DONE)
            if last:
                ticket.close()
            self._sending = True
            await send({"type": "http.response.body", "body": chunk, "more_body": not last})
            self._sending = False
            self._num_sent += 1
            if last:
                return
        ticket.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _send_json(self, send, chunks, ticket: Ticket) -> None:
        body = b""
        async for body in chunks:  # the JSON sink yields one item: the whole body
            pass
        ticket.close()
        await self._start(send, 200, [(b"content-type", b"application/json"),
                                      (b"content-length", str(len(body)).encode())])
        await send({"type": "http.response.body", "body": body})

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

    async def _send_error(self, send, error: RequestError) -> None:
        try:
            if not self._started:
                response = error_response(error)
                await self._start(send, error.status, response.raw_headers)
                await send({"type": "http.response.body", "body": response.body})
            else:
                await send({"type": "http.response.body", "body": self.sink.error(error), "more_body": False})
        except Exception:  # noqa: BLE001 - the connection is gone; nothing left to tell
            pass
