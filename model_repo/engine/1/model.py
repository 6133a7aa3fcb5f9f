"""Triton Python-backend adapter for the trtpipe reference engine (`<model>-engine`).

Thin on purpose: tensors in, the EngineLoop (trtpipe.python_models.loop) does the work, responses out through
each request's decoupled response sender. Everything testable lives in the trtpipe package.
"""

import json
import time
from pathlib import Path

import triton_python_backend_utils as pb_utils

from trtpipe.engine import Engine, EngineLimits
from trtpipe.engine.grammar import GrammarCompiler
from trtpipe.python_models.loop import ENGINE_GAUGES, EngineLoop
from trtpipe.python_models.tensors import decode_request
from trtpipe.python_models.triton_io import submit_requests
from trtpipe.spec import ServingSpec


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        spec = ServingSpec.read(version_dir / "spec.json")
        params = json.loads(args["model_config"]).get("parameters", {})
        engine_dir = version_dir / params.get("engine_dir", {}).get("string_value", "engine")
        limits = EngineLimits(
            max_batch_size=spec.max_batch_size, max_num_tokens=spec.max_num_tokens, max_seq_len=spec.max_seq_len,
            tokens_per_block=spec.tokens_per_block, max_tokens_in_paged_kv_cache=spec.max_tokens_in_paged_kv_cache,
            kv_cache_free_mem_fraction=spec.kv_cache_free_mem_fraction,
            enable_kv_cache_reuse=spec.enable_kv_cache_reuse, batch_scheduler_policy=spec.batch_scheduler_policy,
            enable_chunked_context=spec.enable_chunked_context)
        self.engine = Engine.from_dir(engine_dir, limits)
        self.grammars = self._grammar_compiler(version_dir / "tokenizer")
        self._gauges = self._make_metrics(args["model_name"])
        self._last_publish, self._last_stats = 0.0, None
        self.loop = EngineLoop(self.engine, on_step=self._publish_stats, stream_interval=spec.stream_interval)
        self.loop.start()

    def _grammar_compiler(self, tokenizer_dir):
        """Guided decoding compiles against the published tokenizer. Without one (or one llguidance cannot read),
        guided requests are refused and everything else is served."""
        if not (tokenizer_dir / "tokenizer.json").is_file():
            return None
        try:
            return GrammarCompiler.from_tokenizer_dir(tokenizer_dir, self.engine.config.vocab_size)
        except Exception as e:  # noqa: BLE001 - never fail the model's load over guided decoding
            pb_utils.Logger.log_warn(f"guided decoding is off: the tokenizer cannot be used for it ({e})")
            return None

    def _make_metrics(self, model_name):
        """Engine counters on Triton's own /metrics (port 8002): active requests, KV blocks, prefix-cache tokens."""
        # The family must outlive its metrics: keep it on self.
        self._metric_family = family = pb_utils.MetricFamily(name="trtpipe_engine_state", description="reference engine state",
                                       kind=pb_utils.MetricFamily.GAUGE)
        return {n: family.Metric(labels={"model": model_name, "state": n}) for n in ENGINE_GAUGES}

    def _publish_stats(self, stats):
        # At most every 50 ms while busy (each set() is a message to the server); always when idle.
        now = time.monotonic()
        if stats == self._last_stats:
            return
        if stats.get("num_active_requests", 0) and now - self._last_publish < 0.05:
            return
        self._last_publish, self._last_stats = now, stats
        for name, gauge in self._gauges.items():
            gauge.set(float(stats.get(name, 0)))

    def execute(self, requests):
        submit_requests(requests, self.loop, lambda rid, tensors: decode_request(rid, tensors, self.grammars),
                        pb_utils)
        return None

    def finalize(self):
        self.loop.shutdown()
