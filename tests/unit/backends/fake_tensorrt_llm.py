"""A recorded stand-in for the `tensorrt_llm` module, for driving trtpipe's LLM API adapter without a GPU.

It is not TensorRT-LLM: it records what trtpipe hands to `LLM(...)`, `SamplingParams(...)`,
`generate_async(...)` and `abort()`, and answers with a scripted token stream (one token per step:
100, 101, ... up to max_tokens, or until end_id is "generated" at step `end_at`). A prompt whose first
token is HOLD never produces a token until aborted, for testing cancellation of a queued request.

Imported inside a real Triton (the file copied in as a `tensorrt_llm` package), it appends each call as one
JSON line to $FAKE_TRTLLM_RECORD, so a test in another process can read what the Triton model asked for.
"""

from __future__ import annotations

import asyncio
import importlib.machinery
import json
import os
import sys
import types
from types import SimpleNamespace

__version__ = "1.2.1"
HOLD = 999


def _record(event: str, **data) -> None:
    path = os.environ.get("FAKE_TRTLLM_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": event, **data}, default=str) + "\n")


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class Result:
    def __init__(self, llm, prompt, params, streaming):
        self.llm, self.prompt, self.params, self.streaming = llm, list(prompt), params, streaming
        self.aborted = False

    def abort(self):
        self.aborted = True
        self.llm.aborted.append(self.prompt)
        _record("abort", prompt=self.prompt)

    async def __aiter__(self):
        kw = self.params.kwargs
        tokens: list[int] = []
        while not self.aborted:
            await asyncio.sleep(0.001)
            if self.prompt[0] == HOLD:
                continue
            step = len(tokens)
            token = kw["end_id"] if kw.get("end_id") is not None and step == self.llm.end_at else 100 + step
            tokens.append(token)
            done = len(tokens) >= kw["max_tokens"] or token == kw.get("end_id")
            logprobs = [-0.5] * len(tokens) if kw.get("logprobs") else []
            reason = ("stop" if token == kw.get("end_id") else "length") if done else None
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(tokens), finish_reason=reason,
                                                           logprobs=logprobs)], finished=done)
            if done:
                return


class LLM:
    instances: list["LLM"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.aborted: list[list[int]] = []
        self.end_at = -1
        self.is_shut_down = False
        LLM.instances.append(self)
        _record("init", kwargs=kwargs)

    def generate_async(self, inputs, sampling_params=None, streaming=False):
        self.calls.append((list(inputs), sampling_params.kwargs, streaming))
        _record("generate_async", prompt=list(inputs), sampling=sampling_params.kwargs, streaming=streaming)
        return Result(self, inputs, sampling_params, streaming)

    def shutdown(self):
        self.is_shut_down = True


def install(monkeypatch, version: str = "1.2.1") -> types.ModuleType:
    """Put the stand-in in sys.modules as `tensorrt_llm` (importable, with a module spec) for one test."""
    module = types.ModuleType("tensorrt_llm")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt_llm", None)
    module.__version__ = version
    module.LLM, module.SamplingParams = LLM, SamplingParams
    LLM.instances = []
    monkeypatch.setitem(sys.modules, "tensorrt_llm", module)
    return module
