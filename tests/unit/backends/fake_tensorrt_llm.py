"""A recorded, strict stand-in for the `tensorrt_llm` module, for driving trtpipe's LLM API adapter without a GPU.

It is not TensorRT-LLM: it records what trtpipe hands to `LLM(...)`, `SamplingParams(...)` (with its
`guided_decoding=GuidedDecodingParams(...)`, which constrains nothing here), `generate_async(...)` and `abort()`,
and answers with a scripted token stream (one token per step:
100, 101, ... up to max_tokens, or until end_id is "generated" at step `end_at`). A prompt whose first
token is HOLD never produces a token until aborted, for testing cancellation of a queued request.

Log-probs come in the shapes of TensorRT-LLM 1.2.x's PyTorch backend (executor/result.py CompletionOutput):
`logprobs` is a growing list with, per generated token, a {token_id: Logprob(logprob, rank)} dict of the top
`SamplingParams.logprobs` tokens (see `generation_top`), which holds the sampled token only while it is among
them (not at step `off_top_at`, as under sampling); `prompt_logprobs` has one such dict per prompt position t
for the token after it (see `prompt_top`: the prompt's own next token is the 2nd most likely).
The dicts are built least likely first, so a reader that relies on their order is caught.

Strict like the real classes (pydantic models with extra="forbid", SamplingParams a dataclass), in the names of
the version it pretends to be (`__version__`, or install(version=...)), both 1.x spellings kept here on their own,
not read from trtpipe, so a writer that emits the other version's names fails (fake_llm_args.py holds the tables
and `tensorrt_llm.llmapi.llm_args.update_llm_args_with_extra_dict`, the loader trtllm-serve uses):
- `LLM(**kwargs)` refuses a keyword TorchLlmArgs does not declare, a nested config key its class does not
  declare, and a `speculative_config` that is a plain dict (only the loader turns a dict into a config object);
- `SamplingParams(**kwargs)` refuses an unknown keyword.

Imported inside a real Triton (the file copied in as a `tensorrt_llm` package), it appends each call as one
JSON line to $FAKE_TRTLLM_RECORD, so a test in another process can read what the Triton model asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.machinery
import json
import os
import sys
import types
from types import SimpleNamespace

try:  # beside this file in tests; copied in beside it (as a package) inside Triton
    from tests.unit.backends import fake_llm_args as _args
except ImportError:  # pragma: no cover - the copied package
    from . import fake_llm_args as _args  # type: ignore[no-redef]

__version__ = "1.1.0"  # the pinned image's (trtpipe/trt/toolchain.py PINNED)
HOLD = 999


def _installed_version() -> str:
    module = sys.modules.get("tensorrt_llm")
    return getattr(module, "__version__", __version__)


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {type(value).__name__: dataclasses.asdict(value)}
    if isinstance(value, _args.DecodingConfig):
        return {value.decoding_type: value.fields}
    return str(value)


def _record(event: str, **data) -> None:
    path = os.environ.get("FAKE_TRTLLM_RECORD")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"event": event, **data}, default=_jsonable) + "\n")


@dataclasses.dataclass(kw_only=True)
class GuidedDecodingParams:
    """The fields of tensorrt_llm.sampling_params.GuidedDecodingParams (keyword-only, as upstream); it enforces
    nothing here, it only records the guide and refuses two at once, as upstream's _validate() does."""

    json: str | None = None
    regex: str | None = None
    grammar: str | None = None
    json_object: bool = False
    structural_tag: str | None = None

    def __post_init__(self):
        given = [f.name for f in dataclasses.fields(self) if getattr(self, f.name)]
        if len(given) > 1:
            raise ValueError(f"Only one guide can be used for a request, but got {len(given)}.")


@dataclasses.dataclass(frozen=True)
class Logprob:
    """tensorrt_llm.executor.result.Logprob (a NamedTuple upstream): the log-prob and its 1-based rank."""

    logprob: float
    rank: int | None = None


def generation_top(step: int, k: int, sampled_in_top: bool = True) -> dict[int, Logprob]:
    """Step `step`'s top k: the sampled token 100+step (log-prob -0.5), then 200+20*j+step at -0.5-j (ids stay
    inside a tiny vocabulary, so the frontend can decode them)."""
    ranked = [(100 + step, -0.5)] if sampled_in_top else []
    ranked = (ranked + [(200 + 20 * j + step, -0.5 - j) for j in range(1, k + 1)])[:k]
    return {t: Logprob(v, rank + 1) for rank, (t, v) in reversed(list(enumerate(ranked)))}


def prompt_top(prompt: list[int], position: int, k: int) -> dict[int, Logprob]:
    """Position t's top k: 700+t (-0.25), the prompt's token t+1 (-1.25; 600+t past the prompt), 800+10*j+t..."""
    following = prompt[position + 1] if position + 1 < len(prompt) else 600 + position
    ranked = ([700 + position, following] + [800 + 10 * j + position for j in range(1, k)])[:k]
    return {t: Logprob(-0.25 - rank, rank + 1) for rank, t in reversed(list(enumerate(ranked)))}


class SamplingParams:
    def __init__(self, **kwargs):
        _args.check_fields("SamplingParams", kwargs, _args.SAMPLING_PARAMS_FIELDS)
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
            k = kw.get("logprobs")
            logprobs = [generation_top(i, k, i != self.llm.off_top_at) for i in range(len(tokens))] if k else []
            pk = kw.get("prompt_logprobs")
            prompt_logprobs = [prompt_top(self.prompt, t, pk) for t in range(len(self.prompt))] if pk else None
            reason = ("stop" if token == kw.get("end_id") else "length") if done else None
            yield SimpleNamespace(outputs=[SimpleNamespace(token_ids=list(tokens), finish_reason=reason,
                                                           logprobs=logprobs, prompt_logprobs=prompt_logprobs)],
                                  finished=done)
            if done:
                return


class LLM:
    instances: list["LLM"] = []

    def __init__(self, **kwargs):
        _args.check_llm_kwargs(kwargs, _installed_version())
        self.kwargs = kwargs
        self.calls: list[tuple] = []
        self.aborted: list[list[int]] = []
        self.end_at = -1
        self.off_top_at = -1  # the step whose sampled token is not among the returned top log-probs
        self.is_shut_down = False
        LLM.instances.append(self)
        _record("init", kwargs=kwargs)

    def generate_async(self, inputs, sampling_params=None, streaming=False):
        self.calls.append((list(inputs), sampling_params.kwargs, streaming))
        _record("generate_async", prompt=list(inputs), sampling=sampling_params.kwargs, streaming=streaming)
        return Result(self, inputs, sampling_params, streaming)

    def shutdown(self):
        self.is_shut_down = True


def _sampling_params_module(package: str) -> types.ModuleType:
    """`tensorrt_llm.sampling_params`, where upstream defines GuidedDecodingParams (not a top-level name)."""
    sub = types.ModuleType(f"{package}.sampling_params")
    sub.SamplingParams, sub.GuidedDecodingParams = SamplingParams, GuidedDecodingParams
    return sub


def _llmapi_modules(package: str) -> tuple[types.ModuleType, types.ModuleType]:
    """`tensorrt_llm.llmapi` and `tensorrt_llm.llmapi.llm_args` with the loader trtllm-serve uses and TorchLlmArgs."""
    llmapi = types.ModuleType(f"{package}.llmapi")
    llm_args = types.ModuleType(f"{package}.llmapi.llm_args")
    llm_args.update_llm_args_with_extra_dict = lambda llm_args_, extra, path=None: \
        _args.update_llm_args_with_extra_dict(llm_args_, extra, path, _installed_version())
    llm_args.TorchLlmArgs = lambda **kwargs: _args.TorchLlmArgs(_installed_version(), **kwargs)
    llmapi.llm_args = llm_args
    return llmapi, llm_args


def install(monkeypatch, version: str = __version__) -> types.ModuleType:
    """Put the stand-in in sys.modules as `tensorrt_llm` (importable, with a module spec) for one test."""
    module = types.ModuleType("tensorrt_llm")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt_llm", None)
    module.__version__ = version
    module.LLM, module.SamplingParams = LLM, SamplingParams
    module.sampling_params = _sampling_params_module("tensorrt_llm")
    module.llmapi, llm_args = _llmapi_modules("tensorrt_llm")
    LLM.instances = []
    monkeypatch.setitem(sys.modules, "tensorrt_llm", module)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.sampling_params", module.sampling_params)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", module.llmapi)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi.llm_args", llm_args)
    return module


if __name__ == "tensorrt_llm":
    # Copied in as the `tensorrt_llm` package (integration tests): make the submodules importable too.
    sampling_params = sys.modules["tensorrt_llm.sampling_params"] = _sampling_params_module(__name__)
    llmapi, _llm_args_module = _llmapi_modules(__name__)
    sys.modules["tensorrt_llm.llmapi"], sys.modules["tensorrt_llm.llmapi.llm_args"] = llmapi, _llm_args_module
