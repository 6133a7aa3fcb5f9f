"""The commands other threads send to the one thread that owns an engine (Triton's Python model, Dynamo's worker).

The engine is not thread-safe: callers put commands (add, abort, wake...) on a queue and the owning thread applies
them between steps, all that are waiting at once, so that a burst of arrivals joins one batch.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

IDLE_WAIT_S = 0.05  # an idle engine thread wakes this often to notice shutdown


def drain(inbox: queue.SimpleQueue, apply: Callable[[tuple], None], block: bool) -> None:
    """Apply every waiting command; with `block`, first wait up to IDLE_WAIT_S for one (the engine is idle)."""
    try:
        cmd = inbox.get(timeout=IDLE_WAIT_S) if block else inbox.get_nowait()
    except queue.Empty:
        return
    while True:
        apply(cmd)
        try:
            cmd = inbox.get_nowait()
        except queue.Empty:
            return
