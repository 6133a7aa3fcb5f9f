"""The trtpipe Dynamo worker: tokens in, tokens out, from the live version of a published model.

    python -m trtpipe.dynamo.worker --repo REPO --model tiny-llama [--namespace trtpipe]

It is an `LLMEngine` run by Dynamo's own `Worker` (dynamo.common.backend): Dynamo owns registration
(`ModelInput.Tokens`, chat and completions), the request plane, cancellation monitoring, and shutdown. On
SIGTERM that Worker unregisters the instance from discovery first (the frontend stops routing to it), lets the
requests in flight finish, then calls cleanup(). We did not write our own runtime loop for that reason: the
drain order is Dynamo's and stays right when Dynamo changes it.

Needs the `dynamo` extra (`make dynamo`); the rest of trtpipe.dynamo does not.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncGenerator

from dynamo.common.backend import EngineConfig, LLMEngine, LlmRegistration, WorkerConfig
from dynamo.common.backend.publisher import ComponentSnapshot, PushSource
from dynamo.llm import ModelInput, unregister_model
from dynamo.llm.exceptions import EngineShutdown, InvalidArgument

from trtpipe.engine.grammar import GrammarCompiler
from trtpipe.repo import layout

from .engine_thread import EngineThread, LoadedVersion, load_version
from .kv_events import load_snapshot
from .model_card import write_model_card
from .requests import RequestRefused, engine_request, response_chunk

log = logging.getLogger("trtpipe.dynamo")
SNAPSHOT_INTERVAL_S = 0.05  # load metrics at most this often while busy (each is a message on the event plane)


class TrtpipeEngine(LLMEngine):
    def __init__(self, model_dir: Path, first: LoadedVersion, card_dir: Path, model: str):
        self.model_dir, self.card_dir, self.model = model_dir, card_dir, model
        self.thread = EngineThread(model_dir, first, on_switch=self._on_switch)
        self._guides = self._tokenizer = None
        self._on_switch(first)
        self._last_snapshot = 0.0
        self.instance_file: Path | None = None
        self.drain_timeout_s = 30.0
        self._in_flight = 0  # generate() calls not yet returned: Dynamo has not taken their last chunk yet

    @classmethod
    async def from_args(cls, argv: list[str] | None = None) -> tuple[TrtpipeEngine, WorkerConfig]:
        p = argparse.ArgumentParser(prog="python -m trtpipe.dynamo.worker", description=__doc__.split("\n")[0])
        p.add_argument("--repo", type=Path, default=None, help="model repository [default: trtpipe's]")
        p.add_argument("--model", required=True, help="published model name, e.g. tiny-llama")
        p.add_argument("--namespace", default=os.environ.get("DYN_NAMESPACE", "trtpipe"))
        p.add_argument("--component", default="trtpipe")
        p.add_argument("--endpoint", default="generate")
        p.add_argument("--card-dir", type=Path, default=None,
                       help="where model cards are written, shared by every worker of the model [default: tmp]")
        p.add_argument("--drain-timeout", type=float, default=30.0,
                       help="on SIGTERM, seconds the requests in flight get to finish (after unregistering)")
        p.add_argument("--instance-file", type=Path, default=None,
                       help="write this worker's Dynamo instance id here once registered (for its supervisor)")
        p.add_argument("--discovery-backend", default=os.environ.get("DYN_DISCOVERY_BACKEND", "file"))
        p.add_argument("--request-plane", default=os.environ.get("DYN_REQUEST_PLANE", "tcp"))
        p.add_argument("--event-plane", default=os.environ.get("DYN_EVENT_PLANE", "zmq"))
        args = p.parse_args(argv)
        repo = (args.repo or layout.default_repository()).resolve()
        model_dir = repo / layout.engine_model_name(args.model)
        live = layout.live_version(model_dir)
        if live is None:
            raise SystemExit(f"error: {args.model} has no live version in {repo}. Fix: trtpipe build {args.model}")
        first = await asyncio.to_thread(load_version, model_dir, live)
        cards = args.card_dir or Path(tempfile.gettempdir()) / "trtpipe-dynamo-cards"
        # Named after the version's manifest hash: the same version always gets the same card (see model_card.py).
        card = write_model_card(first.path, first.spec, cards / f"{args.model}-{_fingerprint(first.path)}")
        engine = cls(model_dir, first, card, args.model)
        engine.instance_file, engine.drain_timeout_s = args.instance_file, args.drain_timeout
        config = WorkerConfig(namespace=args.namespace, component=args.component, endpoint=args.endpoint,
                              model_name=str(card), served_model_name=args.model, model_input=ModelInput.Tokens,
                              endpoint_types="chat,completions", discovery_backend=args.discovery_backend,
                              request_plane=args.request_plane, event_plane=args.event_plane)
        return engine, config

    async def start(self, worker_id: int) -> EngineConfig:
        if self.instance_file is not None:  # how a supervisor finds a killed worker's registrations
            self.instance_file.write_text(str(worker_id))
        self.thread.start()
        spec, engine = self.thread.current.spec, self.thread.current.engine
        log.warning("worker %s serving version %d of %s", worker_id, self.thread.current.version, self.model)
        return EngineConfig(model=str(self.card_dir), served_model_name=self.model, llm=LlmRegistration(
            context_length=spec.max_seq_len, kv_cache_block_size=spec.tokens_per_block,
            total_kv_blocks=engine.kv.pool.num_blocks, max_num_seqs=spec.max_batch_size,
            max_num_batched_tokens=spec.max_num_tokens))

    def _on_switch(self, loaded: LoadedVersion) -> None:
        """A version's grammar compiler and token texts (for top log-probs), from its own tokenizer."""
        from tokenizers import Tokenizer

        tokenizer_dir = loaded.path / "tokenizer"
        try:
            self._guides = GrammarCompiler.from_tokenizer_dir(tokenizer_dir, loaded.engine.config.vocab_size)
        except Exception as e:  # noqa: BLE001 - never fail a version over guided decoding
            log.warning("guided decoding is off for version %d: %s", loaded.version, e)
            self._guides = None
        self._tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))

    def _token_text(self, token_id: int) -> str:
        return self._tokenizer.decode([token_id], skip_special_tokens=False) if self._tokenizer else ""

    async def generate(self, request: dict[str, Any], context) -> AsyncGenerator[dict[str, Any], None]:
        rid = context.id()
        compile_guide = self._guides.compile if self._guides else None
        args = (rid, request, self.thread.current.spec, compile_guide, self._token_text)
        try:
            # Grammar compilation runs off the event loop (it can take a while for a large schema).
            guided = (request.get("sampling_options") or {}).get("guided_decoding")
            er, shape = await asyncio.to_thread(engine_request, *args) if guided else engine_request(*args)
        except RequestRefused as e:
            raise InvalidArgument(str(e)) from None
        q = self.thread.submit(er, asyncio.get_running_loop())
        sent, finished = 0, False
        self._in_flight += 1
        try:
            while not finished:
                item = await q.get()
                if isinstance(item, ValueError):
                    raise InvalidArgument(str(item))
                if isinstance(item, Exception):
                    raise EngineShutdown(str(item))
                chunk = response_chunk(item, shape, sent)
                sent += len(chunk["token_ids"])
                finished = item.finished
                yield chunk
                if context.is_stopped():
                    break
        finally:
            self._in_flight -= 1
            if not finished:  # the client went away, or the frontend matched a stop string: free the blocks
                self.thread.abort(rid)

    async def abort(self, context) -> None:
        self.thread.abort(context.id())

    async def kv_event_sources(self) -> list:
        return [PushSource(on_ready=self._set_kv_publisher, dp_rank=0)]

    def _set_kv_publisher(self, publisher) -> None:
        # Blocks cached before the publisher existed (none, unless requests raced registration) are not replayed.
        self.thread.kv_publisher = publisher

    def component_metrics_dp_ranks(self) -> list[int]:
        return [0]

    def attach_snapshot_publisher(self, publisher) -> None:
        def on_stats(stats: dict) -> None:
            now = time.monotonic()
            if stats.get("num_active_requests") and now - self._last_snapshot < SNAPSHOT_INTERVAL_S:
                return
            self._last_snapshot = now
            publisher.publish(0, ComponentSnapshot(dp_rank=0, **load_snapshot(stats)))

        self.thread.on_stats = on_stats

    def supported_controls(self) -> set[str]:
        return {"stats"}

    async def engine_control(self, control: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /engine/control/stats on the worker's system port: what the engine holds now."""
        if control == "stats":
            return self.thread.stats()
        return await super().engine_control(control, body)

    async def on_endpoint_ready(self, endpoint) -> None:
        self._endpoint = endpoint

    async def cleanup(self) -> None:
        # Dynamo's Worker calls this on SIGTERM once the instance is unregistered (no new request comes), but while
        # its endpoint still streams: the requests in flight finish here, within the drain budget, before the
        # engine stops. (Dynamo's own wait before cleanup, DYN_GRACEFUL_SHUTDOWN_GRACE_PERIOD_SECS, is a fixed
        # sleep; this returns as soon as the engine is idle.)
        # Done means every generate() has returned, not just an idle engine: a request's last chunks may still be
        # on their way to Dynamo, and Dynamo's Worker closes the event loop soon after cleanup returns (a stream cut
        # that way ends with "Event loop is closed").
        deadline = time.monotonic() + self.drain_timeout_s
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._in_flight:
            log.warning("drain: %d request(s) still running after %.0f s are ended", self._in_flight,
                        self.drain_timeout_s)
        # The model card Dynamo's Worker leaves would keep the model listed by a frontend with no worker behind it,
        # so it goes too (other workers register their own).
        if getattr(self, "_endpoint", None) is not None:
            try:
                await unregister_model(self._endpoint)
            except Exception as e:  # noqa: BLE001 - shutting down anyway
                log.warning("model card not unregistered: %s", e)
        await asyncio.to_thread(self.thread.shutdown)


def _fingerprint(version_dir: Path) -> str:
    import hashlib

    return hashlib.sha256((version_dir / "manifest.json").read_bytes()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> None:
    from dynamo.common.backend.run import run

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(TrtpipeEngine, argv)


if __name__ == "__main__":
    main()
