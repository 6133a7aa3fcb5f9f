"""Triton Python-backend adapter for the trtpipe reference engine (`<model>-engine`).

Thin on purpose: tensors in, the EngineLoop (trtpipe.backend.loop) does the work, responses out through
each request's decoupled response sender. Everything testable lives in the trtpipe package.
"""

import json
import time
import uuid
from pathlib import Path

import triton_python_backend_utils as pb_utils

from trtpipe.backend.loop import ENGINE_GAUGES, EngineLoop
from trtpipe.backend.tensors import BadRequest, decode_request
from trtpipe.engine import Engine, EngineLimits
from trtpipe.spec import ServingSpec

INPUT_NAMES = ("input_ids", "input_lengths", "request_output_len", "end_id", "pad_id", "streaming",
               "temperature", "runtime_top_k", "runtime_top_p", "seed", "min_tokens", "repetition_penalty",
               "presence_penalty", "frequency_penalty", "stop_words_list", "return_log_probs",
               "return_num_input_tokens", "return_num_output_tokens", "exclude_input_in_output",
               "draft_input_ids", "draft_logits", "stop")


class _Sender:
    def __init__(self, request):
        self._request = request
        self._sender = request.get_response_sender()
        # Only the outputs the client asked for (all of them when it named none). The stub would otherwise prune
        # the rest itself on the engine thread, dropping their numpy arrays without the GIL: the Python 3.12 stub
        # segfaults there (a request naming `outputs`, as the frontend's does).
        self._wanted = set(request.requested_output_names())

    def send(self, tensors, *, error=None, final=False):
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        if error is not None:
            response = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
        elif tensors is None:
            self._sender.send(flags=flags)
            return
        else:
            response = pb_utils.InferenceResponse(
                [pb_utils.Tensor(k, v) for k, v in tensors.items() if k in self._wanted])
        self._sender.send(response, flags=flags)

    def is_cancelled(self):
        return self._request.is_cancelled()


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
        self._gauges = self._make_metrics(args["model_name"])
        self._last_publish, self._last_stats = 0.0, None
        self.loop = EngineLoop(self.engine, on_step=self._publish_stats, stream_interval=spec.stream_interval)
        self.loop.start()

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
        for request in requests:
            sender = _Sender(request)
            tensors = {}
            for name in INPUT_NAMES:
                t = pb_utils.get_input_tensor_by_name(request, name)
                if t is not None:
                    tensors[name] = t.as_numpy()
            stop = tensors.get("stop")
            if stop is not None and bool(stop.reshape(-1)[0]):
                self.loop.stop_request(request.request_id(), sender)
                continue
            try:
                engine_request, opts = decode_request(request.request_id() or uuid.uuid4().hex, tensors)
            except BadRequest as e:
                sender.send(None, error=str(e), final=True)
                continue
            self.loop.submit(engine_request, opts, sender)
        return None

    def finalize(self):
        self.loop.shutdown()
