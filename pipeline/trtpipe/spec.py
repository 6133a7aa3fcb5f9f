"""ServingSpec: the one set of limits that the engine, the Triton configs and the frontend all read.

It is derived from the build config at publish time and written beside the engine as spec.json, so a
served version always carries the limits it was built with and the three layers cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from trtpipe.config import BuildConfig

# The Triton model that serves a build is `<model>-engine` (its directory in the repository: repo/layout.py).
ENGINE_SUFFIX = "-engine"


def engine_model_name(model: str) -> str:
    """`<model>-engine`, the Triton model serving build config `model`: the one place this name is built."""
    return model + ENGINE_SUFFIX


@dataclass(frozen=True)
class ServingSpec:
    model_name: str
    backend: str
    max_batch_size: int
    max_input_len: int
    max_seq_len: int
    max_num_tokens: int
    tokens_per_block: int
    max_tokens_in_paged_kv_cache: int | None
    kv_cache_free_mem_fraction: float
    enable_kv_cache_reuse: bool
    batch_scheduler_policy: str
    enable_chunked_context: bool
    max_queue_delay_microseconds: int
    max_queue_size: int
    instance_count: int
    default_max_tokens: int
    max_max_tokens: int
    max_concurrency: int
    max_queued: int
    max_draft_len: int = 0
    draft_model_name: str | None = None
    stream_interval: int = 1
    # GPUs one engine spans (tp * pp): trt-engine configs place rank r on GPU r (gpu_device_ids).
    world_size: int = 1
    # Set when the engine itself speculates (the LLM API's speculative_config: "Eagle3", "Draft_Target", "NGram").
    # The frontend then runs no draft-target speculation of its own for this model (serve/api/frontend.py).
    engine_speculation: str | None = None
    # What the engine can do beyond the tensorrt_llm interface, set by the backend at publish (backends/*.py);
    # the frontend refuses a request that needs more (serve/openai/validation.py). A spec.json written before these
    # existed reads as none of them: republish to get them.
    max_top_log_probs: int = 0  # top alternatives per token (0: the sampled token's log-prob only)
    returns_prompt_log_probs: bool = False  # prompt log-probs, for `echo` with `logprobs`
    resumes_guided_decoding: bool = False  # honours guided_decoding_prefix_len, so guided requests can speculate
    # The grammar library the engine enforces guided_decoding_guide_type/guide with (llguidance, xgrammar), or None:
    # guided decoding is off for this model (serving.guided_decoding: none) and the frontend refuses guided requests.
    guided_decoding: str | None = None

    @property
    def engine_model(self) -> str:
        return engine_model_name(self.model_name)

    @classmethod
    def from_config(cls, config: BuildConfig) -> "ServingSpec":
        e, s, f = config.engine, config.serving, config.frontend
        return cls(
            model_name=config.name, backend=config.backend,
            max_batch_size=e.max_batch_size, max_input_len=e.max_input_len, max_seq_len=e.max_seq_len,
            max_num_tokens=e.max_num_tokens, tokens_per_block=e.tokens_per_block,
            max_tokens_in_paged_kv_cache=e.max_tokens_in_paged_kv_cache,
            kv_cache_free_mem_fraction=s.kv_cache_free_gpu_mem_fraction,
            enable_kv_cache_reuse=s.enable_kv_cache_reuse, batch_scheduler_policy=s.batch_scheduler_policy,
            enable_chunked_context=s.enable_chunked_context,
            max_queue_delay_microseconds=s.max_queue_delay_microseconds, max_queue_size=s.max_queue_size,
            instance_count=s.instance_count,
            default_max_tokens=f.default_max_tokens, max_max_tokens=f.max_max_tokens,
            max_concurrency=f.max_concurrency, max_queued=f.max_queued,
            max_draft_len=config.speculation.max_draft_len if config.speculation else 0,
            draft_model_name=_draft_model_name(config),
            stream_interval=s.stream_interval, world_size=config.parallelism.world_size,
        )

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def read(cls, path: Path) -> "ServingSpec":
        return cls(**json.loads(path.read_text()))


def _draft_model_name(config: BuildConfig) -> str | None:
    """The published name of the draft: its config's `name:`, however speculation.draft names the config (a
    file name, a path to its YAML, or a config whose `name:` differs from its file name)."""
    from trtpipe.config import load_draft

    draft = load_draft(config)
    return draft.name if draft is not None else None
