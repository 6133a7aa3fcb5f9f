"""Reference inference engine: a CPU/NumPy twin of a TensorRT-LLM engine for Llama-family models.

Imports only numpy, ml_dtypes, safetensors, llguidance (guided decoding) and the stdlib, so it runs and is
tested without a GPU, Triton or torch.
"""

from .config import LlamaConfig, UnsupportedModelError
from .engine import Engine
from .protocol import EngineLimits, EngineRequest, RequestOutput, SamplingParams
from .quantize import quantize_checkpoint
from .convert import convert_checkpoint

__all__ = [
    "Engine",
    "EngineLimits",
    "EngineRequest",
    "LlamaConfig",
    "RequestOutput",
    "SamplingParams",
    "UnsupportedModelError",
    "convert_checkpoint",
    "quantize_checkpoint",
]
