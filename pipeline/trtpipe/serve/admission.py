"""A bound on running and on waiting requests: beyond both, an immediate 429 rather than a queue with no end."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from trtpipe.serve.validation import RequestError


class Admission:
    def __init__(self, max_running: int, max_waiting: int):
        self.max_running, self.max_waiting = max_running, max_waiting
        self._slots = asyncio.Semaphore(max_running)
        self.num_running = 0
        self.num_waiting = 0

    @asynccontextmanager
    async def slot(self):
        if self._slots.locked() and self.num_waiting >= self.max_waiting:
            raise RequestError(f"the server is at capacity ({self.num_running} running, {self.num_waiting} "
                               "waiting); retry shortly", type="server_overloaded", code="rate_limit_exceeded",
                               status=429)
        self.num_waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.num_waiting -= 1
        self.num_running += 1
        try:
            yield
        finally:
            self.num_running -= 1
            self._slots.release()
