"""Gates a new engine must pass before publishing: golden prompts and a short load test.

Golden prompts: greedy output is recorded in the manifest; when the weights are unchanged from the live
version (same quantize-stage key), the new output must equal the live version's, token for token — a
rebuild that changes only limits or serving settings must not change what the model says.
Load test: a batch of requests through the engine in-process, output tokens/s against a threshold.
Which gate runs is the backend's (backends/base.py run_gate): the reference backend runs `engine_gate` here, in
process; the GPU backends record theirs as skipped (they need a GPU host).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tokenizers import Tokenizer

from trtpipe.config import BuildConfig
from trtpipe.manifest import Manifest


@dataclass
class GateResult:
    passed: bool
    skipped: bool = False
    golden_outputs: list[list[int]] = field(default_factory=list)
    compared_with_version: int | None = None
    output_tokens_per_s: float | None = None
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def weights_key(manifest: Manifest) -> str | None:
    return next((s.key for s in manifest.stages if s.stage == "quantize"), None)


def run_gate(config: BuildConfig, engine_dir: Path, checkpoint_dir: Path, new_weights_key: str,
             live: Manifest | None) -> GateResult:
    from trtpipe.backend_registry import get_backend

    return get_backend(config.backend).run_gate(config, engine_dir, checkpoint_dir, new_weights_key, live)


def engine_gate(config: BuildConfig, engine_dir: Path, checkpoint_dir: Path, new_weights_key: str,
                live: Manifest | None) -> GateResult:
    """The gate run in-process on trtpipe's reference engine."""
    from trtpipe.engine import Engine, EngineLimits, SamplingParams

    g = config.gate
    tokenizer = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    prompts = [tokenizer.encode(p, add_special_tokens=False).ids for p in g.golden_prompts]
    limits = EngineLimits(max_batch_size=max(len(prompts), g.load_test_requests),
                          max_seq_len=config.engine.max_seq_len, max_num_tokens=config.engine.max_num_tokens,
                          tokens_per_block=config.engine.tokens_per_block,
                          max_tokens_in_paged_kv_cache=64 * config.engine.tokens_per_block * 8)
    engine = Engine.from_dir(engine_dir, limits)
    result = GateResult(passed=True)
    result.golden_outputs = engine.generate(prompts, g.golden_max_tokens, SamplingParams(temperature=0.0))
    previous = (live.gate or {}).get("golden_outputs") if live is not None else None
    if live is not None and previous and weights_key(live) == new_weights_key:
        result.compared_with_version = live.version
        for i, (old, new) in enumerate(zip(previous, result.golden_outputs)):
            if old != new:
                result.failures.append(f"golden prompt {i} ({g.golden_prompts[i]!r}): greedy output changed "
                                       f"although the weights did not (live v{live.version}: {old[:8]}…, new: {new[:8]}…)")
    load_prompts = [prompts[i % len(prompts)] + [i % engine.config.vocab_size] for i in range(g.load_test_requests)]
    t0 = time.perf_counter()
    outs = engine.generate(load_prompts, g.load_test_output_tokens, SamplingParams(temperature=0.0))
    result.output_tokens_per_s = round(sum(len(o) for o in outs) / (time.perf_counter() - t0), 1)
    if result.output_tokens_per_s < g.min_output_tokens_per_s:
        result.failures.append(f"load test: {result.output_tokens_per_s} output tokens/s < gate.min_output_tokens_per_s "
                               f"{g.min_output_tokens_per_s}")
    result.passed = not result.failures
    return result
