"""A published version's tokenizer/ directory: the checkpoint's tokenizer files, with its chat template where
every reader finds it.

Hugging Face keeps a chat template in one of three places: `chat_template.jinja` (transformers >= 4.43 writes
it there on save_pretrained), `chat_template.json` ({"chat_template": ...}, processors) or the
`chat_template` key of tokenizer_config.json (older saves). transformers prefers them in that order, and so
does this: the template found first is written into the published tokenizer_config.json (the file the
frontend and TensorRT-LLM's preprocessing read), and the original files are kept beside it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                   "tokenizer.model", "chat_template.jinja", "chat_template.json")
TOKENIZER_CONFIG = "tokenizer_config.json"


def chat_template(checkpoint_dir: Path) -> str | list | None:
    """The checkpoint's chat template, from the first place transformers would read it; None if it has none."""
    jinja = checkpoint_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = checkpoint_dir / "chat_template.json"
    if as_json.is_file():
        template = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        if template:
            return template
    config = checkpoint_dir / TOKENIZER_CONFIG
    return json.loads(config.read_text(encoding="utf-8")).get("chat_template") if config.is_file() else None


def write_tokenizer_dir(checkpoint_dir: Path, out_dir: Path) -> set[str]:
    """Copy the tokenizer files into out_dir; returns the names copied byte for byte (a tokenizer_config.json
    given the template from a separate file is rewritten, and so not among them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    copied = set()
    for name in TOKENIZER_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copy2(checkpoint_dir / name, out_dir / name)
            copied.add(name)
    template = chat_template(checkpoint_dir)
    config_path = out_dir / TOKENIZER_CONFIG
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    if template is not None and config.get("chat_template") != template:
        config["chat_template"] = template
        config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        copied.discard(TOKENIZER_CONFIG)
    return copied
