"""The directory Dynamo's frontend reads a model's tokenizer, chat template and context length from.

Dynamo registers a model from a Hugging Face-style directory (its "model deployment card"): tokenizer.json,
tokenizer_config.json (chat template), generation_config.json (end-of-sequence ids) and config.json (context
length). A published version holds the first three in tokenizer/; config.json is written here from the version's
spec, so the frontend's context length is the engine's max_seq_len. Nothing is downloaded: the frontend gets
this local path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trtpipe.spec import ServingSpec


def write_model_card(version_dir: Path, spec: ServingSpec, out_dir: Path) -> Path:
    tokenizer_dir = version_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{tokenizer_dir}/tokenizer.json is missing: Dynamo's frontend tokenizes with it "
                                "(publish the model again with a checkpoint that has a tokenizer)")
    out_dir.mkdir(parents=True, exist_ok=True)
    for src in tokenizer_dir.iterdir():
        if src.is_file():
            shutil.copy2(src, out_dir / src.name)
    engine_config = json.loads((version_dir / "engine" / "config.json").read_text())
    generation = tokenizer_dir / "generation_config.json"
    eos = json.loads(generation.read_text()).get("eos_token_id") if generation.is_file() else None
    config = {
        "architectures": [engine_config.get("architecture", "LlamaForCausalLM")],
        "model_type": "llama",
        "vocab_size": engine_config["vocab_size"],
        "max_position_embeddings": spec.max_seq_len,
        "bos_token_id": engine_config.get("bos_token_id"),
        "eos_token_id": eos if eos is not None else engine_config.get("eos_token_id"),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir
