"""HTTP transport limits: header size and count (431), and deadlines for reading a request (slow clients closed).

uvicorn's httptools protocol, with the limits its own settings lack: uvicorn bounds neither the headers' size nor
their number on httptools, and never times out a request that is still arriving (its keep-alive timeout only
covers the idle time between requests). NOTE: a subclass of uvicorn's protocol rather than h11 (whose
`h11_max_incomplete_event_size` bounds the header size): httptools halves the HTTP cost of every streamed chunk
(bench/frontend_cpu.py), and h11 would still leave the count and the deadlines unbounded. The subclass uses
uvicorn's parser callbacks (on_message_begin, on_header, on_headers_complete, on_message_complete), which
tests/unit/serve/api/test_transport.py exercises over real sockets against the installed uvicorn.

    header deadline  from a connection's start, or from a request's first byte, to the end of its headers
    body deadline    from the end of the headers to the end of the body
    431              header bytes (request line included) or header count over the limit
    408              a deadline passed; the connection is closed either way
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trtpipe.serve import errors
from trtpipe.serve.errors import RequestError


@dataclass(frozen=True)
class TransportLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0


class _Refused(Exception):
    pass


def uvicorn_config(app, *, host: str, port: int | None = None, limits: TransportLimits = TransportLimits(),
                   **kwargs) -> uvicorn.Config:
    """The uvicorn configuration of every API server: httptools, with the limits above."""
    return uvicorn.Config(app, host=host, port=port, http=guarded_http_protocol(limits), **kwargs)


def guarded_http_protocol(limits: TransportLimits) -> type:
    """The uvicorn `http=` protocol class that enforces `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits = TransportLimits()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._refused = False
        self._header_bytes = self._num_headers = 0
        self._arm(self.limits.header_timeout_s, "its headers")  # a connection that sends nothing is closed too

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._num_headers = 0
        self._arm(self.limits.header_timeout_s, "its headers")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url), 0)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count(len(name) + len(value), 1)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._arm(self.limits.body_timeout_s, "its body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # after a refusal the parser's error is ours: the answer is already written
            super().send_400_response(msg)

    # --- limits ----------------------------------------------------------------------------------------------
    def _count(self, num_bytes: int, num_headers: int) -> None:
        self._header_bytes += num_bytes
        self._num_headers += num_headers
        limits = self.limits
        if self._header_bytes > limits.max_header_bytes or self._num_headers > limits.max_headers:
            self._refuse(errors.headers_too_large(limits.max_headers, limits.max_header_bytes))
            raise _Refused  # stops the parser; uvicorn sees a parser error, and send_400_response stays quiet

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, seconds, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, seconds: float, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if what == "its body" and self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # the app answered without waiting for the body (401, 413): nothing to add
            return
        self._refuse(errors.request_timeout(what, seconds))

    def _refuse(self, err: RequestError) -> None:
        self._refused = True
        self._disarm()
        body = json.dumps(err.envelope()).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[err.status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                             b"connection: close\r\n\r\n" % (err.status, reason, len(body)) + body)
        self.transport.close()
