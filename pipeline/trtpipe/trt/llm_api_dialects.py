"""The names TensorRT-LLM's LLM API accepts, per 1.x version: what differs between the releases trtpipe may
write LlmArgs YAML for.

The YAML is read the way `trtllm-serve --extra_llm_api_options` reads it: `update_llm_args_with_extra_dict`
(tensorrt_llm/llmapi/llm_args.py) turns `speculative_config` into a config object with
`DecodingBaseConfig.from_dict`, which dispatches on `decoding_type`, and merges the rest into the LLM keyword
arguments; the config classes are pydantic models with extra="forbid" (StrictBaseModel), so a name the
installed version does not declare is an error at load. The accepted names changed within 1.x:

- "1.1" (TensorRT-LLM >= 1.1, < 1.3; the pinned image's 1.1.0): from_dict's table maps "Eagle" (with
  `eagle3_one_model`), "DraftTarget" and "NGram"; the draft path is `speculative_model_dir`; KvCacheConfig
  declares no `tokens_per_block` (the PyTorch backend keeps its default block of 32 tokens).
  Source: tensorrt_llm/llmapi/llm_args.py in NVIDIA/TensorRT-LLM @fcd3f316 (a 1.0-era tree: DecodingBaseConfig
  .from_dict, EagleDecodingConfig.eagle3_one_model, KvCacheConfig fields); a 1.2.0rc6 EAGLE-3 recipe
  (nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6) still writes `decoding_type: Eagle` + `speculative_model_dir`.
  That 1.2.x final keeps these names is inference.
- "1.3" (TensorRT-LLM >= 1.3): Eagle3DecodingConfig has `decoding_type: Literal['Eagle3']` and the draft path is
  `speculative_model`; KvCacheConfig has `tokens_per_block` (default 32). Source: nvidia.github.io/TensorRT-LLM
  /1.3.0rc27/llm-api/reference/{Eagle3DecodingConfig,KvCacheConfig}.html. "Draft_Target" is the name the
  1.0-era DraftTargetDecodingConfig declares as its decoding_type (inference that 1.3's Literal keeps it).

Nothing here imports TensorRT-LLM: the table is what the YAML writer (trt/llm_args.py) emits and what the
stand-in (tests/unit/backends/fake_tensorrt_llm.py) accepts per version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trtpipe.errors import ConfigError
from trtpipe.trt.toolchain import version_tuple

# The PyTorch backend's KV block size where LlmArgs cannot set it ("1.1"): TensorRT-LLM's default.
DEFAULT_TOKENS_PER_BLOCK = 32


@dataclass(frozen=True)
class Dialect:
    name: str
    since: str  # first TensorRT-LLM release with these names
    until: str | None  # first release without them
    decoding_type: dict[str, str]  # speculation.method -> decoding_type
    extra_fields: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> fields written with it
    draft_path_key: str = "speculative_model_dir"
    kv_tokens_per_block: bool = False  # KvCacheConfig.tokens_per_block exists

    def covers(self, version: str) -> bool:
        v = version_tuple(version)
        return v >= version_tuple(self.since) and (self.until is None or v < version_tuple(self.until))


DIALECTS = (
    Dialect("1.1", since="1.1", until="1.3",
            decoding_type={"eagle3": "Eagle", "draft-target": "DraftTarget", "ngram": "NGram"},
            extra_fields={"eagle3": {"eagle3_one_model": True}}),
    Dialect("1.3", since="1.3", until=None,
            decoding_type={"eagle3": "Eagle3", "draft-target": "Draft_Target", "ngram": "NGram"},
            draft_path_key="speculative_model", kv_tokens_per_block=True),
)
OLDEST = DIALECTS[0].since


def dialect_for(version: str) -> Dialect:
    """The dialect of a TensorRT-LLM version; refuses versions older than any trtpipe writes for."""
    for dialect in DIALECTS:
        if dialect.covers(version):
            return dialect
    raise ConfigError(f"TensorRT-LLM {version} is older than {OLDEST}, the oldest LLM API trtpipe writes for",
                      where="llm_api_options.yaml", fix=f"use TensorRT-LLM >= {OLDEST} (the pinned image)")
