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
        data = {"version": "1.1.0",
                "pretrained_config": {"architecture": "LlamaForCausalLM", "dtype": "bfloat16",
                                      "mapping": {"world_size": tp * pp, "tp_size": tp, "pp_size": pp},
                                      "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8",
                                                       **(quant or {})}},
                "build_config": build_config}
        (path / "config.json").write_text(json.dumps(data))
    for r in (range(tp * pp) if ranks is None else ranks):
        (path / f"rank{r}.engine").write_bytes(b"\0" * 16)
    return path


def write_upstream_models(root: Path) -> Path:
    """Stand-ins for the image's inflight_batcher_llm preprocessing/postprocessing model.py files."""
    for kind in ("preprocessing", "postprocessing"):
        (root / kind / "1").mkdir(parents=True, exist_ok=True)
        (root / kind / "1" / "model.py").write_text(f"# stand-in for the image's {kind}/1/model.py\n")
    return root


def publish_fake_build(repo: Path, name: str, key: str, root: Path, **engine_kw):
    """Publish config `name` from a fake engine dir and checkpoint under `root` (TRTPIPE_TRTLLM_MODELS must
    point at write_upstream_models' directory)."""
    from trtpipe.config import load_config
    from trtpipe.manifest import Manifest, StageRecord
    from trtpipe.repo.versions import publish_version
    from trtpipe.spec import ServingSpec

    config = load_config(name)
    engine = write_engine_dir(root / "engine", **engine_kw)
    ckpt = root / "ckpt"
    ckpt.mkdir(parents=True, exist_ok=True)
    (ckpt / "tokenizer.json").write_text("{}")
    manifest = Manifest(model_name=name, backend="trt-engine", config=config.model_dump(mode="json"),
                        stages=[StageRecord("compile", key, False, 1.0,
                                            {"engine_limits": {"tensorrt_llm_version": "1.1.0"}})])
    return publish_version(repo, ServingSpec.from_config(config), manifest, engine, ckpt)
