"""Which backends exist and what each accepts: one row per backend (the module that defines it and its
capabilities, as data), and the config check over those capabilities.

This is the one place a new backend is named. Everything else asks `get_backend(name)` and talks to the
object it returns (backends/base.py), so config, cache, manifest, repository versioning, gates and serving
have no per-backend branches. What a backend accepts is stated here once; the backend objects read it from
here.

The capabilities sit at the bottom layer, below config.py, so that config validation checks a config against
its backend without importing any backend module: those sit at the top and import stages, trt/, repo/ and
serve/.

NOTE: get_backend loads a backend's module by name, on first use. That is deliberate: repository versioning,
gates and serving (layers below the backends) ask for the object by the name a config or manifest holds, and a
name lookup keeps the import graph one-way (tests/unit/test_layers.py checks it); this is the one run-time
plugin lookup in the package, like an entry point.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from trtpipe.errors import ConfigError, SourceError

if TYPE_CHECKING:
    from trtpipe.backends.base import Backend
    from trtpipe.config import BuildConfig
    from trtpipe.engine.checkpoint_quant import CheckpointQuant

BACKEND_MODULES = {
    "reference": "trtpipe.backends.reference",
    "trt-engine": "trtpipe.backends.tensorrt_engine",
    "trtllm-pytorch": "trtpipe.backends.tensorrt_llm_pytorch",
}


class Prequantized(NamedTuple):
    """A checkpoint quantization a backend serves as the checkpoint carries it (no re-quantization), matched against
    the checkpoint's CheckpointQuant (engine/checkpoint_quant.py): its scheme, its method, then each `require`d field.
    """

    scheme: str  # CheckpointQuant.scheme
    methods: tuple[str, ...]  # CheckpointQuant.method values taken; () = any method of the scheme
    how: str  # how the backend takes it, for plans, manifests and the README
    # (CheckpointQuant field, or "raw.KEY" for a key of the checkpoint's own quantization dict; the values accepted;
    # why the others are not): each must hold.
    require: tuple[tuple[str, tuple[Any, ...], str], ...] = ()
    # The oldest GPU architecture with kernels for it (checked at build once the format is known, and before serving).
    min_compute_capability: tuple[int, int] | None = None
    label: str = ""  # what messages call it; default: the methods, or the scheme

    @property
    def name(self) -> str:
        return self.label or ", ".join(self.methods) or self.scheme

    def matches(self, quant: "CheckpointQuant") -> bool:
        return quant.scheme == self.scheme and (not self.methods or quant.method in self.methods)


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend accepts in a config; check_config refuses the rest. Defaults are the most common case."""

    name: str
    # quantization.format -> how this backend produces it. A format not here is refused at config load.
    quant_formats: Mapping[str, str] = field(default_factory=dict)
    kv_cache_dtypes: tuple[str, ...] = ()
    # speculation.method values this backend serves.
    speculation_methods: tuple[str, ...] = ()
    # True: a draft is its own build and its own published model set, and the frontend runs draft-target
    # speculation against it. False: the engine speculates itself; the draft (if any) is only fetched.
    draft_is_a_model: bool = True
    max_world_size: int | None = None
    supports_stream_interval: bool = False
    # The config's llm_api section and parallelism.ep are TensorRT-LLM LLM API settings.
    uses_llm_api: bool = False
    # serving.guided_decoding values this backend's engine enforces guides with, its default first; "none" (the
    # frontend refuses guided requests) is always accepted.
    guided_decoding_backends: tuple[str, ...] = ()
    # dtype -> why this backend refuses a model of that dtype (the whole message).
    refused_dtypes: Mapping[str, str] = field(default_factory=dict)
    # The quantized checkpoints this backend serves as they are; any other quantized checkpoint is refused at build.
    prequantized: tuple[Prequantized, ...] = ()
    # Where that list comes from (recorded with each build that uses it).
    prequantized_source: str = ""


# TensorRT-LLM 1.1.0's LLM API reads ModelOpt's quantization from hf_quant_config.json only: load_hf_quant_config
# has no "modelopt" quant_method, so a config.json quantization_config naming it alone is not read.
_MODELOPT_FILE = ("found_in", ("hf_quant_config.json",),
                  "TensorRT-LLM 1.1.0 reads a ModelOpt export's quantization from hf_quant_config.json only, not from "
                  "config.json")

CAPABILITIES = {c.name: c for c in (
    BackendCapabilities(
        name="reference",
        quant_formats={"int8_wo": "int8 weight-only, per group (trtpipe.engine.quantize)",
                       "int4_wo": "int4 weight-only, per group (trtpipe.engine.quantize)"},
        speculation_methods=("draft-target",),
        max_world_size=1,
        supports_stream_interval=True,
        guided_decoding_backends=("llguidance",),  # engine/grammar.py
        prequantized=(Prequantized("int4-awq", (), "read by the reference engine's loader (engine/)", label="AWQ int4"),
                      Prequantized("int4-gptq", (), "read by the reference engine's loader (engine/)",
                                   label="GPTQ int4"),
                      Prequantized("fp8", (), "read by the reference engine's loader (engine/)", label="FP8")),
        prequantized_source="trtpipe's own reference engine",
    ),
    BackendCapabilities(
        name="trt-engine",
        quant_formats={"fp8": "ModelOpt quantize.py, calibrated", "int4_awq": "ModelOpt quantize.py, calibrated",
                       "w4a8_awq": "ModelOpt quantize.py, calibrated", "int8_sq": "ModelOpt quantize.py, calibrated",
                       "int8_wo": "convert_checkpoint.py weight-only", "int4_wo": "convert_checkpoint.py weight-only"},
        kv_cache_dtypes=("fp8", "int8"),
        speculation_methods=("draft-target",),
        # The C++ backend accepts "xgrammar" only (getGuidedDecodingConfigFromParams, trt/guided_decoding.py).
        guided_decoding_backends=("xgrammar",),
        # TensorRT-LLM 1.1.0 examples/models/core/llama/convert_checkpoint.py, update_quant_config_from_hf: config.json
        # quantization_config quant_method "awq" -> W4A16_GPTQ (use_autoawq), "gptq" -> W4A16_GPTQ (desc_act refused),
        # "fbgemm_fp8" -> FP8 rowwise; nothing else is read from a Hugging Face checkpoint (FP8 exports included).
        prequantized=(
            Prequantized("int4-awq", ("awq",), "convert_checkpoint.py reads AutoAWQ's quantization_config (W4A16_GPTQ "
                                                "with use_autoawq); int4_gptq weight-only flags, no calibration",
                         label="AutoAWQ int4 (grouped)",
                         require=(("group_size", (32, 64, 128, 256), "trtpipe passes --per_group --group_size; a "
                                                                     "per-channel checkpoint (group_size -1) was not "
                                                                     "checked against the script"),)),
            Prequantized("int4-gptq", ("gptq",), "convert_checkpoint.py reads GPTQ's quantization_config (W4A16_GPTQ); "
                                                  "int4_gptq weight-only flags, no calibration",
                         label="GPTQ int4 (v1, grouped, no act-order)",
                         require=(("act_order", (False,), "convert_checkpoint.py raises 'GPTQ with desc_act=True is "
                                                           "not implemented!'"),
                                  ("zeros_minus_one", (True,), "its loader reads AutoGPTQ's v1 layout (qzeros hold "
                                                                "zero - 1), not gptq_v2"),
                                  ("group_size", (32, 64, 128, 256), "trtpipe passes --per_group --group_size; a "
                                                                     "per-channel checkpoint (group_size -1) was not "
                                                                     "checked against the script"))),
        ),
        prequantized_source="TensorRT-LLM 1.1.0 examples/models/core/llama/convert_checkpoint.py",
    ),
    BackendCapabilities(
        name="trtllm-pytorch",
        quant_formats={"fp8": "ModelOpt hf_ptq.py -> FP8 Hugging Face checkpoint (Ada, Hopper, Blackwell)",
                       "nvfp4": "ModelOpt hf_ptq.py -> NVFP4 Hugging Face checkpoint (Blackwell only)",
                       "int4_awq": "ModelOpt hf_ptq.py -> INT4-AWQ Hugging Face checkpoint"},
        kv_cache_dtypes=("fp8",),
        speculation_methods=("eagle3", "draft-target", "ngram"),
        draft_is_a_model=False,
        supports_stream_interval=True,  # the adapter groups tokens itself (python_models/loop.py deliver)
        uses_llm_api=True,
        # TorchLlmArgs.guided_decoding_backend: Optional[Literal["xgrammar", "llguidance"]] (llm_args.py;
        # "llguidance is supported in PyTorch backend only").
        guided_decoding_backends=("xgrammar", "llguidance"),
        refused_dtypes={"float32": "a float32 model is not a serving configuration for TensorRT-LLM: use bfloat16 "
                                   "or float16"},
        # TensorRT-LLM 1.1.0 tensorrt_llm/_torch/model_config.py ModelConfig.from_pretrained (read at 1.1.0rc6: the
        # upstream side of Ataraksia/TensorRT-LLM@a451bf9, whose version.py says 1.1.0rc6): hf_quant_config.json
        # (ModelOpt) -> load_modelopt_quant_config takes its quant_algo; otherwise config.json's quantization_config ->
        # load_hf_quant_config knows quant_method "fp8" with weight_block_size (FP8_BLOCK_SCALES, 128x128 asserted)
        # and "mxfp4" only, and returns an empty QuantConfig for anything else (AWQ, GPTQ, compressed-tensors,
        # per-tensor HF fp8), which would load packed or fp8 weights as if they were full precision.
        # Architectures: the docs' quantization "Hardware Support Matrix" (FP8 per tensor from Ada, FP8 block scaling
        # on Hopper and Blackwell sm100/103, NVFP4 on Blackwell, W4A16 AWQ from Ampere).
        prequantized=(
            Prequantized("fp8", ("modelopt:FP8",), "the LLM API loads the ModelOpt FP8 export as it is "
                                                   "(hf_quant_config.json quant_algo FP8)", require=(_MODELOPT_FILE,),
                         min_compute_capability=(8, 9), label="ModelOpt FP8"),
            Prequantized("fp8", ("fp8",), "the LLM API loads the block-scaled FP8 checkpoint as it is "
                                          "(quantization_config quant_method fp8 -> FP8_BLOCK_SCALES)",
                         # The raw key, not CheckpointQuant.block_size: transformers reads an absent
                         # weight_block_size as (128, 128), TensorRT-LLM's .get("weight_block_size", []) as no
                         # quantization at all.
                         require=(("raw.weight_block_size", ([128, 128],),
                                   "load_hf_quant_config reads FP8 blocks only from an explicit weight_block_size and "
                                   "asserts FP8_BLOCK_SCALES only supports block_size=(128,128); anything else is "
                                   "loaded as if full precision"),),
                         min_compute_capability=(9, 0), label="FP8 with 128x128 weight blocks"),
            Prequantized("unknown", ("modelopt:NVFP4",), "the LLM API loads the ModelOpt NVFP4 export as it is "
                                                         "(Blackwell GPUs only)", require=(_MODELOPT_FILE,),
                         min_compute_capability=(10, 0), label="ModelOpt NVFP4"),
            Prequantized("unknown", ("modelopt:W4A16_AWQ",), "the LLM API loads the ModelOpt INT4-AWQ export as it is",
                         require=(_MODELOPT_FILE,), min_compute_capability=(8, 0), label="ModelOpt W4A16_AWQ"),
        ),
        prequantized_source="TensorRT-LLM 1.1.0 tensorrt_llm/_torch/model_config.py (ModelConfig.from_pretrained)",
    ),
)}


def backend_names() -> tuple[str, ...]:
    return tuple(BACKEND_MODULES)


def capabilities(name: str) -> BackendCapabilities:
    """What the backend `name` accepts. Raises KeyError for an unknown name, like get_backend."""
    return CAPABILITIES[name]


def get_backend(name: str) -> "Backend":
    """The backend object for a config's `backend:` value. Raises KeyError for an unknown name (config
    validation refuses those first, naming the choices)."""
    return importlib.import_module(BACKEND_MODULES[name]).BACKEND


def check_config(caps: BackendCapabilities, config: "BuildConfig") -> None:
    """Raise ValueError (config.py turns it into a ConfigError naming the file) for what the backend `caps`
    describes cannot build."""
    q = config.quantization
    if q and q.format not in caps.quant_formats:
        others = [n for n in backend_names() if n != caps.name and q.format in CAPABILITIES[n].quant_formats]
        need = f"needs backend {' or '.join(others)}" if others else "is not a format of any backend"
        raise ValueError(f"quantization.format {q.format!r} {need}; "
                         f"the {caps.name} backend supports {', '.join(caps.quant_formats)}")
    if q and q.kv_cache_dtype and q.kv_cache_dtype not in caps.kv_cache_dtypes:
        raise ValueError(f"quantization.kv_cache_dtype {q.kv_cache_dtype!r} is not supported by the {caps.name} "
                         f"backend; use one of {', '.join(caps.kv_cache_dtypes) or '(none: leave it unset)'}")
    if caps.max_world_size is not None and config.parallelism.world_size > caps.max_world_size:
        raise ValueError(f"the {caps.name} backend runs on one CPU process: set parallelism tp: 1, pp: 1")
    if not caps.uses_llm_api and (config.llm_api != type(config.llm_api)() or config.parallelism.ep):
        raise ValueError(f"llm_api and parallelism.ep are settings of the TensorRT-LLM LLM API (backend "
                         f"trtllm-pytorch); the {caps.name} backend has none: remove them")
    if not caps.supports_stream_interval and config.serving.stream_interval != 1:
        raise ValueError(f"serving.stream_interval applies to the reference backend only: the {caps.name} "
                         "backend streams every token; remove it or set it to 1")
    g = config.serving.guided_decoding
    if g not in (None, "none") and g not in caps.guided_decoding_backends:
        raise ValueError(f"serving.guided_decoding {g!r} is not available on the {caps.name} backend; use one of "
                         f"{', '.join((*caps.guided_decoding_backends, 'none'))}")
    s = config.speculation
    if s and s.method not in caps.speculation_methods:
        raise ValueError(f"speculation.method {s.method!r} is not served by the {caps.name} backend; it "
                         f"serves {', '.join(caps.speculation_methods)}")
    if config.dtype in caps.refused_dtypes:
        raise ValueError(caps.refused_dtypes[config.dtype])


def guided_decoding(caps: BackendCapabilities, config: "BuildConfig") -> str | None:
    """The grammar library the engine enforces guides with for `config`, or None when guided decoding is off."""
    g = config.serving.guided_decoding
    if g == "none" or not caps.guided_decoding_backends:
        return None
    return g or caps.guided_decoding_backends[0]


def check_prequantized(backend_name: str, quant: "CheckpointQuant | None",
                       config: "BuildConfig") -> Prequantized | None:
    """Once the checkpoint's own quantization is known (None: full precision): the row of the backend's table it
    is served by, or a SourceError (exit 4, as the reference backend's refusal) saying why not and which backends
    serve it. A quantized checkpoint with a `quantization:` section is refused on every backend (ConfigError, exit 3):
    trtpipe does not re-quantize quantized weights.
    `quant` is read duck-typed (scheme, method, describe() and the fields a row requires)."""
    if quant is None:
        return None
    caps = CAPABILITIES[backend_name]
    if config.quantization is not None:
        raise ConfigError(f"the checkpoint is already quantized ({quant.describe()}, {quant.found_in}) and "
                          f"quantization.format {config.quantization.format} would quantize it again; trtpipe does "
                          "not re-quantize a quantized weight", where=f"{config.name}: quantization",
                          fix="drop `quantization:` from the config (the checkpoint's own format is served as it "
                              "is), or point source at the full-precision checkpoint")
    rows = [row for row in caps.prequantized if row.matches(quant)]
    unmet = [f"{name} is {_field(quant, name)!r}: {why}" for row in rows for name, allowed, why in row.require
             if _field(quant, name) not in allowed]
    for row in rows:
        if all(_field(quant, name) in allowed for name, allowed, _ in row.require):
            return row
    others = [n for n in backend_names() if n != backend_name and _accepts(CAPABILITIES[n], quant)]
    why = "; ".join(unmet) if unmet else f"it is not in the {caps.name} backend's list ({caps.prequantized_source})"
    fix = (f"use backend {' or '.join(others)}, which serve(s) it as it is" if others else
           "no backend serves this format as it is: use the checkpoint's full-precision original") + \
        f"; {caps.name} serves {', '.join(_names(caps)) or 'no quantized checkpoint'}"
    raise SourceError(f"the {caps.name} backend cannot serve this checkpoint's quantization ({quant.describe()}, "
                      f"{quant.found_in}): {why}", where=f"{config.name}: source", fix=fix)


def _field(quant: "CheckpointQuant", name: str) -> Any:
    if name.startswith("raw."):
        return (quant.raw or {}).get(name[len("raw."):])
    return getattr(quant, name)


def _accepts(caps: BackendCapabilities, quant: "CheckpointQuant") -> bool:
    return any(row.matches(quant) and all(_field(quant, n) in allowed for n, allowed, _ in row.require)
               for row in caps.prequantized)


def _names(caps: BackendCapabilities) -> list[str]:
    return [row.name for row in caps.prequantized]
