"""A Triton Python model that costs nothing to "run": bench/frontend_scaling.py's stand-in for `<model>-engine`.

Benchmark only, never part of a product repository: the bench copies it over a built model's engine (same
config.pbtxt, so the same tensor interface, decoupled). It reads `request_output_len` and streams that many
pre-made token ids, one per step of a fixed clock (`step_s` in zero_cost.json beside it; 10 ms by default)
for every request at once, sent as the reference engine sends them: the first token alone, then one response
per `stream_interval` tokens (spec.json), the rest with the final flag. No model, no KV cache: the CPU it
spends is Triton's own per-response cost, so what limits tokens/s is the frontend.
"""

import json
import threading
import time
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

TOKENS = np.arange(300, 500, dtype=np.int32)  # ordinary vocabulary ids: they detokenize to short text


class _Stream:
    __slots__ = ("request", "sender", "wanted", "num_prompt", "total", "produced", "sent")

    def __init__(self, request, num_prompt, total):
        self.request, self.sender = request, request.get_response_sender()
        self.wanted = set(request.requested_output_names())
        self.num_prompt, self.total, self.produced, self.sent = num_prompt, total, 0, 0


class TritonPythonModel:
    def initialize(self, args):
        version_dir = Path(args["model_repository"]) / args["model_version"]
        self.stream_interval = json.loads((version_dir / "spec.json").read_text()).get("stream_interval", 1)
        options = version_dir / "zero_cost.json"
        self.step_s = json.loads(options.read_text()).get("step_s", 0.01) if options.is_file() else 0.01
        self._new, self._lock, self._stop = [], threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def execute(self, requests):
        for request in requests:
            stop = pb_utils.get_input_tensor_by_name(request, "stop")
            if stop is not None and bool(stop.as_numpy().reshape(-1)[0]):
                request.get_response_sender().send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                continue
            total = int(pb_utils.get_input_tensor_by_name(request, "request_output_len").as_numpy().reshape(-1)[0])
            num_prompt = pb_utils.get_input_tensor_by_name(request, "input_ids").as_numpy().shape[-1]
            with self._lock:
                self._new.append(_Stream(request, num_prompt, max(1, total)))
        return None

    def _send(self, s, final):
        ids = TOKENS[np.arange(s.sent, s.produced) % len(TOKENS)]
        tensors = {"output_ids": ids.reshape(1, 1, -1),
                   "sequence_length": np.asarray([[len(ids)]], dtype=np.int32),
                   "num_input_tokens": np.asarray([[s.num_prompt]], dtype=np.int32),
                   "num_output_tokens": np.asarray([[s.produced]], dtype=np.int32)}
        response = pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in tensors.items() if k in s.wanted])
        s.sender.send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0)
        s.sent = s.produced

    def _run(self):
        active, next_step = [], time.monotonic()
        while not self._stop.is_set():
            next_step += self.step_s
            delay = next_step - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_step = time.monotonic()  # behind: do not burst to catch up
            with self._lock:
                active += self._new
                self._new = []
            keep = []
            for s in active:
                if s.request.is_cancelled():
                    s.sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    continue
                s.produced += 1
                pending = s.produced - s.sent
                final = s.produced >= s.total
                if final or s.sent == 0 or pending >= self.stream_interval:
                    self._send(s, final)
                if not final:
                    keep.append(s)
            active = keep

    def finalize(self):
        self._stop.set()
        self._thread.join(5)
