"""EngineThread: the one thread that owns the reference engine in a Dynamo worker; the event loop sends it commands.

Like the Triton adapter's loop (python_models/loop.py), it admits requests between steps (in-flight batching),
runs engine.step(), and hands each request's outputs back, here to an asyncio queue on the worker's loop. Also:
- Aborts (a client gone, a stop string matched by the frontend) end the request in the engine at the next step
  boundary and free its blocks.
- After each step the block pool's stored/removed events go to Dynamo's KV publisher, and the load numbers to
  the metrics sink, so the router routes by what this worker's cache really holds.
- Publish and rollback: a watcher thread reads which version the model repository has live (the same
  config.pbtxt Triton follows) and loads it off this thread; the switch waits until the requests already on the
  old engine have finished (new ones queue meanwhile), then its cached blocks are announced removed.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from trtpipe.engine import Engine, EngineLimits, EngineRequest, RequestOutput
from trtpipe.engine.inbox import drain
from trtpipe.repo import layout
from trtpipe.spec import ServingSpec

from .kv_events import KvPublisher, publish_events, removed_all

log = logging.getLogger("trtpipe.dynamo")
WATCH_INTERVAL_S = 0.5


def engine_limits(spec: ServingSpec) -> EngineLimits:
    """The engine limits a published version's spec sets (as the Triton adapter reads them)."""
    return EngineLimits(
        max_batch_size=spec.max_batch_size, max_num_tokens=spec.max_num_tokens, max_seq_len=spec.max_seq_len,
        tokens_per_block=spec.tokens_per_block, max_tokens_in_paged_kv_cache=spec.max_tokens_in_paged_kv_cache,
        kv_cache_free_mem_fraction=spec.kv_cache_free_mem_fraction, enable_kv_cache_reuse=spec.enable_kv_cache_reuse,
        batch_scheduler_policy=spec.batch_scheduler_policy, enable_chunked_context=spec.enable_chunked_context)


@dataclass
class LoadedVersion:
    version: int
    path: Path
    spec: ServingSpec
    engine: Engine


def load_version(model_dir: Path, version: int) -> LoadedVersion:
    vdir = model_dir / str(version)
    spec = ServingSpec.read(vdir / "spec.json")
    if spec.backend != "reference":
        raise ValueError(f"{vdir} is built for backend {spec.backend!r}; the trtpipe Dynamo worker runs the "
                         "reference engine only (on GPUs Dynamo's own TensorRT-LLM worker serves the artifact)")
    engine = Engine.from_dir(vdir / "engine", engine_limits(spec))
    engine.kv.pool.events = []
    return LoadedVersion(version, vdir, spec, engine)


class EngineThread:
    def __init__(self, model_dir: Path, first: LoadedVersion,
                 on_switch: Callable[[LoadedVersion], None] = lambda v: None) -> None:
        self.model_dir = model_dir
        self.current = first
        self.on_switch = on_switch  # runs on this thread when a new version takes over
        self.kv_publisher: KvPublisher | None = None  # set once Dynamo hands us one
        self.on_stats: Callable[[dict], None] = lambda stats: None
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._active: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._held: list[tuple] = []  # adds that wait for a version switch
        self._next: LoadedVersion | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trtpipe-dynamo-engine", daemon=True)
        self._watcher = threading.Thread(target=self._watch, name="trtpipe-dynamo-version-watch", daemon=True)
        self.num_aborted = 0  # requests ended early by abort(); tests and /metrics read it

    # --- called from the event loop ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._watcher.start()

    def submit(self, request: EngineRequest, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
        """Queue a request; its outputs (RequestOutput, or an Exception that ends it) arrive on the queue."""
        q: asyncio.Queue = asyncio.Queue()
        self._commands.put(("add", request, loop, q))
        return q

    def abort(self, request_id: str) -> None:
        self._commands.put(("abort", request_id))

    def stats(self) -> dict[str, Any]:
        stats = self.current.engine.stats()
        stats["version"] = self.current.version
        stats["num_aborted_total"] = self.num_aborted
        return stats

    def shutdown(self, timeout_s: float = 5.0) -> None:
        self._stopping.set()
        self._commands.put(("wake",))
        self._thread.join(timeout_s)

    # --- the loop ----------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            engine = self.current.engine
            drain(self._commands, self._apply, block=not engine.has_unfinished_requests())
            if self._next is not None and not engine.has_unfinished_requests():
                self._switch()
                continue
            if not engine.has_unfinished_requests():
                continue
            try:
                outputs = engine.step()
            except Exception as e:  # noqa: BLE001 - an engine bug must fail the requests, not hang them
                log.exception("engine step failed")
                self._fail_all(RuntimeError(f"engine step failed: {type(e).__name__}: {e}"))
                continue
            for out in outputs:
                self._deliver(out)
            self._after_step()
        self._fail_all(RuntimeError("the worker is shutting down"))

    def _apply(self, cmd: tuple) -> None:
        if cmd[0] == "add":
            _, request, loop, q = cmd
            if self._next is not None:
                self._held.append(cmd)  # admitted by the version being switched to
                return
            try:
                self.current.engine.add_request(request)
            except ValueError as e:
                loop.call_soon_threadsafe(q.put_nowait, e)
                return
            self._active[request.request_id] = (loop, q)
        elif cmd[0] == "abort":
            rid = cmd[1]
            held = [c for c in self._held if c[1].request_id == rid]
            for c in held:
                self._held.remove(c)
            out = self.current.engine.abort(rid)
            target = self._active.pop(rid, None)
            if out is not None or held:
                self.num_aborted += 1
            if target is not None and out is not None:
                target[0].call_soon_threadsafe(target[1].put_nowait, out)
            self._after_step()
        elif cmd[0] == "next":
            self._next = cmd[1]

    def _deliver(self, out: RequestOutput) -> None:
        target = self._active.get(out.request_id)
        if target is None:
            return
        if out.finished:
            del self._active[out.request_id]
        target[0].call_soon_threadsafe(target[1].put_nowait, out)

    def _after_step(self) -> None:
        pool = self.current.engine.kv.pool
        events, pool.events = pool.events, []
        if events and self.kv_publisher is not None:
            try:
                publish_events(events, self.kv_publisher)
            except Exception:  # noqa: BLE001 - routing hints must never stop generation
                log.exception("KV events dropped")
        try:
            self.on_stats(self.stats())
        except Exception:  # noqa: BLE001 - metrics must never stop generation
            log.exception("load metrics dropped")

    def _switch(self) -> None:
        old, new = self.current, self._next
        assert new is not None
        self._after_step()  # the old pool's last events first
        if self.kv_publisher is not None:
            removed_all(old.engine.kv.pool.cached_hashes(), self.kv_publisher)
        self.current, self._next = new, None
        log.warning("now serving version %d of %s (was %d)", new.version, self.model_dir.name, old.version)
        self.on_switch(new)
        held, self._held = self._held, []
        for cmd in held:
            self._apply(cmd)
        self._after_step()

    def _fail_all(self, error: Exception) -> None:
        for rid, (loop, q) in list(self._active.items()):
            self.current.engine.abort(rid)
            loop.call_soon_threadsafe(q.put_nowait, error)
        self._active.clear()
        for _, _, loop, q in self._held:
            loop.call_soon_threadsafe(q.put_nowait, error)
        self._held.clear()

    # --- following the repository -------------------------------------------------------------------------------
    def _watch(self) -> None:
        wanted = self.current.version
        while not self._stopping.wait(WATCH_INTERVAL_S):
            try:
                live = layout.live_version(self.model_dir)
            except Exception:  # noqa: BLE001 - a config being replaced; read it again next time
                continue
            if live is None or live == wanted:
                continue
            try:
                loaded = load_version(self.model_dir, live)
            except Exception as e:  # noqa: BLE001 - keep serving the version we have
                log.error("version %s of %s cannot be loaded, still serving %d: %s", live, self.model_dir.name,
                          wanted, e)
                wanted = live  # not retried until the live version changes again
                continue
            wanted = live
            self._commands.put(("next", loaded))


def wait_idle(thread: EngineThread, timeout_s: float) -> bool:
    """True once the engine has no request (for drains and tests)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not thread.current.engine.has_unfinished_requests():
            return True
        time.sleep(0.02)
    return False
