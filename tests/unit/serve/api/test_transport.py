"""Transport limits over real sockets against the installed uvicorn: header size and count (431), slow headers,
slow bodies and silent connections closed (408), while ordinary and keep-alive requests pass."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import uvicorn

from tests.conftest import free_port
from trtpipe.serve.api.transport import TransportLimits, guarded_http_protocol

LIMITS = TransportLimits(max_header_bytes=2000, max_headers=12, header_timeout_s=0.4, body_timeout_s=0.4)


async def echo_app(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(echo_app, host="127.0.0.1", port=port, log_level="error",
                                          http=guarded_http_protocol(LIMITS)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(5)


def exchange(port: int, *parts: bytes, pause_s: float = 0.0) -> bytes:
    """Send `parts` (pausing between them), then read until the server closes or 2 s pass."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(2.0)
        for part in parts:
            try:
                s.sendall(part)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server closed the connection: read what it said
            time.sleep(pause_s)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
        except (TimeoutError, socket.timeout, ConnectionResetError):
            pass
        return got


def status_and_error(response: bytes) -> tuple[int, dict]:
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)["error"]


def request(body: bytes = b"hi", extra: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def test_an_ordinary_request_and_a_keep_alive_second_one_pass(port):
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.settimeout(2.0)
        for payload in (b"one", b"two"):
            s.sendall(request(payload))
            got = b""
            while not got.endswith(b"\r\n\r\n" + payload):
                chunk = s.recv(65536)
                assert chunk, got
                got += chunk
            assert got.startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("extra", [b"".join(b"x-h%d: v\r\n" % i for i in range(20)),  # too many headers
                                   b"x-big: " + b"a" * 5000 + b"\r\n"])  # too many header bytes
def test_headers_over_the_limits_get_431_with_an_openai_envelope(port, extra):
    status, error = status_and_error(exchange(port, request(extra=extra)))
    assert (status, error["code"]) == (431, "request_header_too_large")
    assert "12 headers, 2000 bytes" in error["message"]


def test_headers_sent_too_slowly_get_408_and_the_connection_closes(port):
    t = time.monotonic()
    # Slowloris: a little of the headers now and then, never their end (the last part goes before the deadline).
    got = exchange(port, b"POST / HTTP/1.1\r\n", b"host: x\r\n", pause_s=0.15)
    status, error = status_and_error(got)
    assert (status, error["code"]) == (408, "request_timeout") and "its headers within 0.4 s" in error["message"]
    assert time.monotonic() - t < 1.9  # closed by the server, not by the client's read timeout


def test_a_body_sent_too_slowly_gets_408(port):
    got = exchange(port, request(b"0123456789")[:-8], b"45", pause_s=0.15)  # 6 of 10 body bytes, then nothing
    status, error = status_and_error(got)
    assert status == 408 and "its body within 0.4 s" in error["message"]


def test_a_connection_that_sends_nothing_is_closed(port):
    t = time.monotonic()
    status, _ = status_and_error(exchange(port))
    assert status == 408 and time.monotonic() - t < 1.9
