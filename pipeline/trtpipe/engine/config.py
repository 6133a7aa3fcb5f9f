"""LlamaConfig: the model hyper-parameters the reference engine needs, read from a HF config.json.

The supported families are a table, not branches: each architecture name maps to the few facts that
differ between them (bias on q/k/v, whether a sliding window may be set). Anything else is refused
with a message that names what was found and what is supported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


class UnsupportedModelError(ValueError):
    """The checkpoint uses something the reference engine does not implement."""


@dataclass(frozen=True)
class _Family:
    qkv_bias: bool
    sliding_window_key: str | None  # the config key that turns sliding-window attention on


# SmolLM and TinyLlama publish as LlamaForCausalLM, so they need no entry of their own.
SUPPORTED_ARCHITECTURES: dict[str, _Family] = {
    "LlamaForCausalLM": _Family(qkv_bias=False, sliding_window_key=None),
    "MistralForCausalLM": _Family(qkv_bias=False, sliding_window_key="sliding_window"),
    "Qwen2ForCausalLM": _Family(qkv_bias=True, sliding_window_key="use_sliding_window"),
}
SUPPORTED_ROPE_TYPES = ("default", "llama3")


@dataclass(frozen=True)
class LlamaConfig:
    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    # None, or {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
    # "original_max_position_embeddings"}.
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.num_attention_heads % self.num_key_value_heads:
            raise UnsupportedModelError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}; grouped-query attention needs it to be"
            )

    @property
    def num_queries_per_kv(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    @property
    def qkv_size(self) -> int:
        return (self.num_attention_heads + 2 * self.num_key_value_heads) * self.head_dim

    def kv_bytes_per_token(self, itemsize: int = 4) -> int:
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * itemsize

    @classmethod
    def from_hf_config(cls, d: dict[str, Any]) -> LlamaConfig:
        archs = d.get("architectures") or []
        arch = archs[0] if archs else None
        if arch not in SUPPORTED_ARCHITECTURES:
            raise UnsupportedModelError(
                f"config.json `architectures` is {archs!r}; the reference engine supports "
                f"{sorted(SUPPORTED_ARCHITECTURES)}"
            )
        family = SUPPORTED_ARCHITECTURES[arch]
        _refuse_sliding_window(arch, family, d)
        if d.get("mlp_bias"):
            raise UnsupportedModelError(f"{arch} with `mlp_bias: true` is not supported; only bias-free MLPs are")
        n_heads = int(d["num_attention_heads"])
        hidden = int(d["hidden_size"])
        head_dim = d.get("head_dim") or hidden // n_heads
        rope_theta, rope_scaling = _parse_rope(d)
        attention_bias = bool(d.get("attention_bias", False))
        return cls(
            architecture=arch,
            vocab_size=int(d["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(d["intermediate_size"]),
            num_hidden_layers=int(d["num_hidden_layers"]),
            num_attention_heads=n_heads,
            num_key_value_heads=int(d.get("num_key_value_heads") or n_heads),
            head_dim=int(head_dim),
            max_position_embeddings=int(d.get("max_position_embeddings", 2048)),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            qkv_bias=family.qkv_bias or attention_bias,
            o_bias=attention_bias,  # Llama's attention_bias also biases o_proj; Qwen2 never does
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=d.get("eos_token_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        """Inverse of `to_dict`; keys that are not fields (engine_format, quantization...) go to `extra`."""
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})


def _refuse_sliding_window(arch: str, family: _Family, d: dict[str, Any]) -> None:
    key = family.sliding_window_key
    if key is None or not d.get(key):
        return
    # NOTE: the paged cache keeps every token; a windowed model would silently attend too far.
    raise UnsupportedModelError(
        f"{arch} with sliding-window attention (`{key}: {d[key]!r}`) is not supported; "
        f"the reference engine supports only full attention (`sliding_window: null`)"
    )


def _parse_rope(d: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    # Hub checkpoints carry rope_theta + rope_scaling; transformers>=5 writes rope_parameters.
    params = d.get("rope_parameters")
    if params is not None:
        theta = float(params.get("rope_theta", d.get("rope_theta", 10000.0)))
        scaling = params
    else:
        theta = float(d.get("rope_theta", 10000.0))
        scaling = d.get("rope_scaling")
    if not scaling:
        return theta, None
    rope_type = scaling.get("rope_type", scaling.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModelError(
            f"rope scaling type {rope_type!r} is not supported; supported: {list(SUPPORTED_ROPE_TYPES)} or null"
        )
    if rope_type == "default":
        return theta, None
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    missing = [k for k in keys if k not in scaling]
    if missing:
        raise UnsupportedModelError(f"llama3 rope scaling is missing {missing}; found keys {sorted(scaling)}")
    return theta, {"rope_type": "llama3", **{k: float(scaling[k]) for k in keys}}

