"""quantize: weight-only int8 / int4 for the reference engine; a pass-through otherwise.

For trt-engine the quantization happens inside the convert stage (convert_checkpoint.py's weight-only
flags, or ModelOpt's quantize.py), so this stage passes its input through there too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.stages.base import Inputs, Stage

REFERENCE_MODES = {"int8_wo": "int8", "int4_wo": "int4"}
# A fixed token sequence for the logit / perplexity delta recorded in the manifest.
EVAL_SEQUENCE_LEN = 64


def is_passthrough(config: BuildConfig) -> bool:
    return config.backend != "reference" or config.quantization is None


def _key_inputs(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    q = config.quantization
    return {"convert": inputs["convert"].key, "format": q.format if q else None,
            "group_size": q.group_size if q else None}


def _run(config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
    from trtpipe.engine import quantize_checkpoint

    q = config.quantization
    report = quantize_checkpoint(inputs["convert"].path, out_dir, REFERENCE_MODES[q.format], group_size=q.group_size)
    return {"quantization_report": report}


STAGE = Stage(name="quantize", version=1, key_inputs=_key_inputs, run=_run)
