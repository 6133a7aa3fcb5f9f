"""compile: the servable engine directory.

reference: the converted (maybe quantized) weights plus a smoke gate: the engine loads and generates.
trt-engine: trtllm-build with the configured limits, then the engine dir is verified and its limits read back.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.errors import StageError
from trtpipe.stages.base import Inputs, Stage, link_or_copy_tree

SMOKE_PROMPT = [1, 2, 3, 4, 5, 6, 7, 8]


def _key_inputs(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    key = {"quantize": inputs["quantize"].key, "backend": config.backend, "engine": config.engine.model_dump()}
    if config.backend == "trt-engine":
        from trtpipe.trt.recipes import TOOLCHAIN

        key.update(toolchain=TOOLCHAIN, tp=config.parallelism.tp, pp=config.parallelism.pp,
                   max_draft_len=config.speculation.max_draft_len if config.speculation else 0,
                   # An engine is specific to the GPU architecture and the exact TensorRT(-LLM) it was built with.
                   machine=machine_fingerprint())
    return key


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> dict[str, Any]:
    from trtpipe.trt.preflight import build_fingerprint, detect_machine

    return build_fingerprint(detect_machine())


def _smoke_gate(engine_dir: Path) -> dict[str, Any]:
    from trtpipe.engine import Engine, EngineLimits

    engine = Engine.from_dir(engine_dir, EngineLimits(max_batch_size=2, max_seq_len=64, max_num_tokens=64,
                                                      max_tokens_in_paged_kv_cache=256))
    vocab = engine.config.vocab_size
    t0 = time.perf_counter()
    out = engine.generate([[t % vocab for t in SMOKE_PROMPT]], max_new_tokens=4)
    seconds = time.perf_counter() - t0
    if len(out[0]) == 0:
        raise StageError("the engine loaded but generated nothing", where="compile (smoke gate)",
                         fix="check the checkpoint; rebuild with --force convert")
    return {"smoke_gate": {"passed": True, "generated_tokens": len(out[0]), "seconds": round(seconds, 3)}}


def _run(config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
    if config.backend == "reference":
        link_or_copy_tree(inputs["quantize"].path, out_dir)
        return _smoke_gate(out_dir)
    from trtpipe.stages.external import run_logged
    from trtpipe.trt.engine_dir import verify_engine_dir
    from trtpipe.trt.recipes import TrtTools, build_commands

    commands = build_commands(config, inputs["quantize"].path, out_dir, TrtTools())
    for i, cmd in enumerate(commands):
        run_logged(cmd.argv, out_dir.parent / f"{out_dir.name}.{i}.log", stage="compile", cwd=cmd.cwd, env=cmd.env)
    return {"commands": [c.argv for c in commands], "engine_limits": verify_engine_dir(out_dir, config),
            "build_fingerprint": machine_fingerprint()}


STAGE = Stage(name="compile", version=1, key_inputs=_key_inputs, run=_run)
