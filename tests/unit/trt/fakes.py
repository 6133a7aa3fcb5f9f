"""A fake trtllm-build output directory, for checking trtpipe's engine-dir verification without
TensorRT-LLM."""

from __future__ import annotations

import json
from pathlib import Path


def write_engine_dir(path: Path, *, tp: int = 1, pp: int = 1, ranks: list[int] | None = None,
                     build: dict | None = None, quant: dict | None = None, plugin: dict | None = None,
                     config_json: bool = True) -> Path:
    """A fake trtllm-build output: config.json in the layout Engine.save writes, and rank files."""
    path.mkdir(parents=True, exist_ok=True)
    if config_json:
        build_config = {"max_batch_size": 64, "max_input_len": 7168, "max_seq_len": 8192, "max_num_tokens": 8192,
                        "max_beam_width": 1, "kv_cache_type": "PAGED", "max_draft_len": 0,
                        "speculative_decoding_mode": 1,
                        "plugin_config": {"tokens_per_block": 32, "paged_kv_cache": True,
                                          "use_paged_context_fmha": True, **(plugin or {})}}
        build_config.update(build or {})
        data = {"version": "1.2.1",
                "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                                      "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp},
                                      "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                                                       **(quant or {})}},
                "build_config": build_config}
        (path / "config.json").write_text(json.dumps(data))
    for r in (range(tp * pp) if ranks is None else ranks):
        (path / f"rank{r}.engine").write_bytes(b"\0" * 16)
    return path
