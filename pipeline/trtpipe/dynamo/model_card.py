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
import tempfile
from pathlib import Path

from trtpipe.spec import ServingSpec


def write_model_card(version_dir: Path, spec: ServingSpec, out_dir: Path) -> Path:
    """Write the card to out_dir once (a card already there is kept), atomically.

    Workers of one model must register the very same card, path included: Dynamo's frontend keeps the first
    card's checksum for a model and rejects workers whose card differs ("Rejected incompatible workers"), so
    every worker of a version shares one out_dir."""
    tokenizer_dir = version_dir / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{tokenizer_dir}/tokenizer.json is missing: Dynamo's frontend tokenizes with it "
                                "(publish the model again with a checkpoint that has a tokenizer)")
    if (out_dir / "config.json").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        _write(tokenizer_dir, version_dir, spec, staging)
        staging.rename(out_dir)
    except OSError:
        if not (out_dir / "config.json").is_file():  # not another worker's card: a real failure
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _write(tokenizer_dir: Path, version_dir: Path, spec: ServingSpec, out_dir: Path) -> None:
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
