"""Admission counts shared by the API-server processes of one `trtpipe serve`, so the bounds stay global
(and the speculation acceptance window, so every process turns a model's speculation off and on together).

`--max-running` / `--max-waiting` mean the same with N workers as with one: every worker checks and updates
the same counts, under one lock, before it admits, queues or refuses a request (429). Shared memory
(multiprocessing.RawArray, handed to each worker when it is spawned) holds one (running, waiting) pair per
(worker, model); a worker writes only its own row and a total is the sum over the rows. When a worker dies,
the supervisor zeroes its row before the replacement starts, so a crash never leaks capacity.

NOTE: the lock is a POSIX semaphore held for a few microseconds per admission decision. A worker killed
inside that window would leave it held; the supervisor then logs that admission is stuck and says to restart
serve (it cannot tell a held lock from a slow one, so it never breaks it).
"""

from __future__ import annotations

import hashlib
import multiprocessing

from trtpipe.errors import TrtpipeError

KEY_BYTES = 16  # a blake2b digest of the model name: fixed-size slots, any name length
LOCK_TIMEOUT_S = 5.0


class SharedCounters:
    """Per-worker (running, waiting) counts for up to `max_models` model names, in shared memory."""

    def __init__(self, num_workers: int, max_models: int = 256, window_rounds: int = 64, ctx=None):
        ctx = ctx or multiprocessing.get_context("spawn")
        self.num_workers, self.max_models, self.window_rounds = num_workers, max_models, window_rounds
        self.lock = ctx.Lock()
        self._keys = ctx.RawArray("c", max_models * KEY_BYTES)
        self._cells = ctx.RawArray("q", num_workers * max_models * 2)
        # Per model: rounds recorded, drafted and accepted over the window, then the window's (drafted, accepted).
        self._windows = ctx.RawArray("q", max_models * (3 + 2 * window_rounds))
        self.worker = 0  # the row this process writes; set by the worker after it is spawned
        self._slot_of: dict[str, int] = {}

    def slots(self, model: str) -> "SharedSlots":
        return SharedSlots(self, self._slot(model))

    def window(self, model: str) -> "SharedWindow":
        return SharedWindow(self, self._slot(model))

    def _slot(self, model: str) -> int:
        slot = self._slot_of.get(model)
        if slot is not None:
            return slot
        key = hashlib.blake2b(model.encode(), digest_size=KEY_BYTES).digest()
        with self.lock:
            for i in range(self.max_models):
                held = self._keys[i * KEY_BYTES:(i + 1) * KEY_BYTES]
                if held == key:
                    slot = i
                    break
                if held == bytes(KEY_BYTES):
                    self._keys[i * KEY_BYTES:(i + 1) * KEY_BYTES] = key
                    slot = i
                    break
            else:
                raise TrtpipeError(f"more than {self.max_models} models served at once by one trtpipe serve",
                                   fix="serve fewer models per server")
        self._slot_of[model] = slot
        return slot

    def totals(self, slot: int) -> tuple[int, int]:
        """(running, waiting) summed over every worker. Call with the lock held for a consistent decision."""
        cells, stride = self._cells, self.max_models * 2
        running = waiting = 0
        for base in range(slot * 2, len(cells), stride):
            running += cells[base]
            waiting += cells[base + 1]
        return running, waiting

    def add(self, slot: int, running: int, waiting: int) -> None:
        base = (self.worker * self.max_models + slot) * 2
        self._cells[base] += running
        self._cells[base + 1] += waiting

    def clear_worker(self, worker: int) -> bool:
        """Zero a dead worker's row (what its requests held). False: the lock could not be taken."""
        if not self.lock.acquire(timeout=LOCK_TIMEOUT_S):
            return False
        try:
            start = worker * self.max_models * 2
            for i in range(start, start + self.max_models * 2):
                self._cells[i] = 0
            return True
        finally:
            self.lock.release()


class SharedSlots:
    """One model's counts as Admission sees them (the interface of admission.LocalSlots)."""

    shared = True
    __slots__ = ("_counters", "_slot", "lock")

    def __init__(self, counters: SharedCounters, slot: int):
        self._counters, self._slot, self.lock = counters, slot, counters.lock

    def totals(self) -> tuple[int, int]:
        return self._counters.totals(self._slot)

    def add(self, running: int, waiting: int) -> None:
        self._counters.add(self._slot, running, waiting)


class SharedWindow:
    """One model's last `window_rounds` speculation rounds, from every worker (the interface of
    speculation.LocalWindow). Not cleared when a worker dies: its rounds were real."""

    __slots__ = ("_c", "_base", "_size")

    def __init__(self, counters: SharedCounters, slot: int):
        self._c, self._size = counters, counters.window_rounds
        self._base = slot * (3 + 2 * self._size)

    def record(self, num_draft: int, num_accepted: int) -> None:
        w, b = self._c._windows, self._base
        with self._c.lock:
            count = w[b]
            at = b + 3 + 2 * (count % self._size)
            if count >= self._size:  # the oldest round leaves the window
                w[b + 1] -= w[at]
                w[b + 2] -= w[at + 1]
            w[at], w[at + 1] = num_draft, num_accepted
            w[b], w[b + 1], w[b + 2] = count + 1, w[b + 1] + num_draft, w[b + 2] + num_accepted

    def totals(self) -> tuple[int, int, int]:
        w, b = self._c._windows, self._base
        with self._c.lock:
            return min(w[b], self._size), w[b + 1], w[b + 2]
