"""convert: Hugging Face checkpoint -> the backend's checkpoint format.

reference: the packed NumPy engine format (trtpipe.engine.convert_checkpoint).
trt-engine: TensorRT-LLM's convert_checkpoint.py, or ModelOpt's quantize.py when the quantization format
needs calibration (the quantize stage is then a pass-through, as TensorRT-LLM does both in one tool).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.stages.base import Inputs, Stage

REFERENCE_FORMAT_VERSION = 1
MODELOPT_FORMATS = ("fp8", "int4_awq", "w4a8_awq", "int8_sq")


def uses_modelopt(config: BuildConfig) -> bool:
    return config.backend == "trt-engine" and config.quantization is not None \
        and config.quantization.format in MODELOPT_FORMATS


def _key_inputs(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    key = {"fetch": inputs["fetch"].key, "backend": config.backend, "dtype": config.dtype}
    if config.backend == "reference":
        key["format"] = REFERENCE_FORMAT_VERSION
    else:
        from trtpipe.trt.recipes import TOOLCHAIN

        key.update(toolchain=TOOLCHAIN, tp=config.parallelism.tp, pp=config.parallelism.pp,
                   quantization=config.quantization.model_dump() if config.quantization else None)
    return key


def _run(config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
    hf_dir = inputs["fetch"].path
    if config.backend == "reference":
        from trtpipe.engine import convert_checkpoint

        return {"summary": convert_checkpoint(hf_dir, out_dir, dtype=config.dtype)}
    from trtpipe.stages.external import run_logged
    from trtpipe.trt.recipes import TrtTools, convert_command, quantize_command

    tools = TrtTools()
    cmd = (quantize_command if uses_modelopt(config) else convert_command)(config, hf_dir, out_dir, tools)
    run_logged(cmd.argv, out_dir.parent / f"{out_dir.name}.log", stage="convert", cwd=cmd.cwd, env=cmd.env)
    return {"command": cmd.argv}


STAGE = Stage(name="convert", version=1, key_inputs=_key_inputs, run=_run)
