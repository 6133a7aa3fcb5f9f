"""convert_checkpoint: any checkpoint the engine reads -> engine dir, by what the checkpoint holds.

Full precision goes through weights.py (cast to the storage dtype); one already quantized (AWQ, GPTQ, FP8) through
prequantized.py, which keeps its quantized weights as they are. Its own module so that neither of those two
imports the other's caller.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .checkpoint_quant import read_checkpoint_quant
from .config import LlamaConfig
from .prequantized import convert_prequantized
from .weights import STORAGE_DTYPES
from .weights import convert_checkpoint as convert_float_checkpoint


def convert_checkpoint(hf_dir: Path, out_dir: Path, dtype: str = "float32") -> dict[str, Any]:
    """HF checkpoint dir -> engine dir. `dtype`: the storage dtype of what is float; compute is float32."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"`dtype` must be one of {sorted(STORAGE_DTYPES)}. Given: {dtype!r}")
    quant = read_checkpoint_quant(Path(hf_dir))
    if quant is None:
        return convert_float_checkpoint(hf_dir, out_dir, dtype=dtype)
    cfg = LlamaConfig.from_hf_config(json.loads((Path(hf_dir) / "config.json").read_text()))
    return convert_prequantized(Path(hf_dir), Path(out_dir), cfg, quant, dtype)
