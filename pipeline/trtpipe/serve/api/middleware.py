"""Pure-ASGI guards in front of every route: API keys and the request-body size limit.

Both answer with the OpenAI error envelope before FastAPI parses anything. Keys are compared in constant time
(hmac.compare_digest against every configured key, no early exit) and never logged or echoed.
"""

from __future__ import annotations

import hmac
import json
import os
import time
from pathlib import Path

from starlette.exceptions import HTTPException

from trtpipe.serve import errors
from trtpipe.serve.errors import RequestError

OPEN_PATHS = frozenset({"/health/live", "/health"})


async def send_error(send, err: RequestError) -> None:
    body = json.dumps(err.envelope()).encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in (err.headers or {}).items()]
    await send({"type": "http.response.start", "status": err.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def load_api_keys(flags: tuple[str, ...] = (), key_file: Path | None = None, env: str = "TRTPIPE_API_KEYS"
                  ) -> tuple[str, ...]:
    """--api-key flags, the comma-separated env var, and a file with one key per line (# comments)."""
    keys = [k for k in flags if k]
    keys += [k.strip() for k in os.environ.get(env, "").split(",") if k.strip()]
    if key_file is not None:
        keys += [line.strip() for line in Path(key_file).read_text().splitlines()
                 if line.strip() and not line.strip().startswith("#")]
    return tuple(dict.fromkeys(keys))


class ApiKeyAuth:
    def __init__(self, app, keys: tuple[str, ...], protect_metrics: bool):
        self.app = app
        self._keys = [k.encode() for k in keys]
        self._open = OPEN_PATHS if protect_metrics else OPEN_PATHS | {"/metrics"}

    def _authorized(self, scope) -> bool:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                if value[:7].lower() == b"bearer ":
                    given = value[7:].strip()
                break
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(given, key)
        return ok and bool(given)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self._keys or scope["path"] in self._open or self._authorized(scope):
            return await self.app(scope, receive, send)
        await send_error(send, errors.unauthorized())


class BodyLimit:
    """413 for a declared Content-Length over the limit, and for a chunked body that grows past it (raised
    from `receive` as an HTTPException, which the app renders as an error envelope)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["trtpipe.arrival"] = time.perf_counter()  # TTFT counts from here
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    return await send_error(send, errors.request_too_large(self.max_bytes))
                return await self.app(scope, receive, send)
        seen = 0

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, errors.request_too_large(self.max_bytes).message)
            return message

        await self.app(scope, limited_receive, send)


def arrival_time(scope) -> float:
    """When the request reached the app (set by BodyLimit before the body was read and parsed)."""
    return scope.get("trtpipe.arrival") or time.perf_counter()
