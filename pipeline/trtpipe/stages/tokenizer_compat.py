"""Whether a draft model can propose tokens for a target: the same token ids must mean the same text.

Decided by what gives ids their meaning, not by the bytes of tokenizer.json (a file re-saved by another
library version differs in whitespace, key order, normalizer or decoder details and is still the same
tokenizer): the vocabulary (token -> id), the BPE merges (as pairs, in order) and the special (added) tokens
with their ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.errors import ConfigError, SourceError


def _merges(model: dict[str, Any]) -> list[tuple[str, ...]]:
    """Merges as pairs: tokenizers writes them as "a b" strings (older) or ["a", "b"] lists (0.20+)."""
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model.get("merges") or []]


def identity(tokenizer_json: Path) -> dict[str, Any]:
    """What decides the meaning of each id."""
    try:
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SourceError(f"cannot read {tokenizer_json.name}: {e}", where=str(tokenizer_json),
                          fix="build again; if it recurs the checkpoint's tokenizer.json is damaged") from None
    model = data.get("model") or {}
    added = sorted((t.get("id"), t.get("content"), bool(t.get("special"))) for t in data.get("added_tokens") or [])
    return {"type": model.get("type"), "vocab": model.get("vocab"), "merges": _merges(model), "added": added}


def differences(target: Path, draft: Path) -> list[str]:
    """What differs between two tokenizer.json files, in words; [] when they give ids the same meaning."""
    a, b = identity(target), identity(draft)
    names = {"type": "model type", "vocab": "vocabulary", "merges": "BPE merges", "added": "special tokens"}
    return [names[k] for k in names if a[k] != b[k]]


def check_same_tokenizer(config: BuildConfig, target_dir: Path, draft_dir: Path) -> None:
    """Draft tokens are verified as target token ids: refuse a draft whose ids mean something else."""
    differ = differences(target_dir / "tokenizer.json", draft_dir / "tokenizer.json")
    if differ:
        raise ConfigError(f"the draft {config.speculation.draft!r} tokenizes differently from {config.name!r} "
                          f"(different {', '.join(differ)})", where="speculation.draft",
                          fix="choose a draft from the same model family and tokenizer")
