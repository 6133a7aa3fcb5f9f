"""Send tensorrt_llm-style requests to a real Triton with the real tritonclient (sync gRPC streaming)."""

from __future__ import annotations

import queue
import uuid

import numpy as np
import tritonclient.grpc as grpcclient


def inputs(prompt: list[int], max_tokens: int, *, streaming: bool = True, exclude_input: bool = True,
           **extra) -> list[grpcclient.InferInput]:
    tensors = {
        "input_ids": np.array([prompt], dtype=np.int32),
        "input_lengths": np.array([[len(prompt)]], dtype=np.int32),
        "request_output_len": np.array([[max_tokens]], dtype=np.int32),
        "streaming": np.array([[streaming]], dtype=np.bool_),
        "exclude_input_in_output": np.array([[exclude_input]], dtype=np.bool_),
    }
    for name, value in extra.items():
        tensors[name] = value
    out = []
    for name, arr in tensors.items():
        dtype = {np.int32: "INT32", np.bool_: "BOOL", np.float32: "FP32", np.uint64: "UINT64"}[arr.dtype.type]
        t = grpcclient.InferInput(name, list(arr.shape), dtype)
        t.set_data_from_numpy(arr)
        out.append(t)
    return out


class StreamSession:
    """One gRPC stream carrying one request; collects every response until the final flag."""

    def __init__(self, url: str):
        self.client = grpcclient.InferenceServerClient(url)
        self.responses: queue.Queue = queue.Queue()
        self.client.start_stream(callback=lambda result, error: self.responses.put((result, error)))

    def send(self, model: str, tensors: list, request_id: str | None = None) -> str:
        request_id = request_id or uuid.uuid4().hex
        self.client.async_stream_infer(model, tensors, request_id=request_id)
        return request_id

    def collect(self, timeout: float = 60.0) -> list:
        """[(output_ids or None, is_final, error)] until the final response."""
        got = []
        while True:
            result, error = self.responses.get(timeout=timeout)
            if error is not None:
                got.append((None, True, error))
                return got
            final = result.get_response().parameters["triton_final_response"].bool_param
            ids = result.as_numpy("output_ids")
            got.append((None if ids is None else ids.reshape(-1).tolist(), final, None))
            if final:
                return got

    def close(self, cancel: bool = False) -> None:
        self.client.stop_stream(cancel_requests=cancel)
        self.client.close()


def generate(url: str, model: str, prompt: list[int], max_tokens: int, **kw) -> list:
    session = StreamSession(url)
    try:
        session.send(model, inputs(prompt, max_tokens, **kw))
        return session.collect()
    finally:
        session.close()


def engine_state(metrics_port: int, model: str = "tiny-llama-engine") -> dict[str, float]:
    """The reference engine's gauges for one model from Triton's own /metrics endpoint. (Triton goes on
    listing the gauges of models unloaded since, at their last values: without the filter they would mix.)"""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    state = {}
    for line in text.splitlines():
        if line.startswith("trtpipe_engine_state{") and f'model="{model}"' in line:
            labels, value = line.rsplit(" ", 1)
            name = labels.split('state="')[1].split('"')[0]
            state[name] = float(value)
    return state
