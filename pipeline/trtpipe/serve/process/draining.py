"""uvicorn that drains on the first SIGTERM/SIGINT: one API server, alone (serve.process.server) or as a worker.

The drain itself is Frontend.drain: readiness turns false and admission stops at once (new requests get 503);
requests in flight get the budget to finish; the rest end with an SSE error event and `[DONE]` (or a 503).
Then uvicorn stops. A second signal forces the exit.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Callable

import uvicorn

log = logging.getLogger("trtpipe.serve")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM/SIGINT drains the frontend before uvicorn shuts down.
    `on_started` runs once uvicorn listens and the app's start-up (models loaded) is done."""

    def __init__(self, config: uvicorn.Config, drain: Callable, drain_timeout_s: float,
                 on_started: Callable[[], None] = lambda: None):
        super().__init__(config)
        self._drain, self._drain_timeout_s, self._on_started = drain, drain_timeout_s, on_started
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    def handle_exit(self, sig: int, frame) -> None:
        # NOTE: the signal is not recorded in _captured_signals, so uvicorn does not re-raise it: exit code 0.
        if self._draining or self._loop is None or not self.started:
            self.should_exit = True
            self.force_exit = self._draining
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._drain_then_exit(sig)))

    async def _drain_then_exit(self, sig: int) -> None:
        log.warning("signal %s: draining (up to %.0f s for requests in flight)", signal.Signals(sig).name,
                    self._drain_timeout_s)
        try:
            ended = await self._drain(self._drain_timeout_s)
            if ended:
                log.warning("drain: ended %d request(s) that did not finish in time", ended)
        finally:
            self.should_exit = True
