"""fetch: a Hugging Face-format checkpoint on local disk, with every file's sha256 recorded.

Sources: the project's synthetic checkpoints, a local directory, or a Hugging Face repo at a pinned
revision (resolved to a commit sha). The hub token comes from HF_TOKEN in the environment and is never
written anywhere.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.errors import StageError
from trtpipe.stages.base import Inputs, Stage, file_hashes
from trtpipe.stages.synthetic import write_synthetic_checkpoint

SYNTHETIC_GENERATOR_VERSION = 1
# What a checkpoint needs, and nothing that can execute code on load.
ALLOW_PATTERNS = ["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                  "special_tokens_map.json", "tokenizer.model", "*.safetensors", "model.safetensors.index.json"]
PICKLE_PATTERNS = ["*.bin", "*.pt", "*.pth"]
_SHA = re.compile(r"^[0-9a-f]{40}$")


def _resolve_revision(repo: str, revision: str) -> str:
    if _SHA.match(revision):
        return revision
    from huggingface_hub import HfApi

    try:
        return HfApi().model_info(repo, revision=revision, token=os.environ.get("HF_TOKEN")).sha
    except Exception as e:  # noqa: BLE001 - any hub failure is reported the same way, without the token
        raise StageError(f"could not resolve revision {revision!r} of {repo}: {type(e).__name__}",
                         where="fetch", fix="pin source.revision to a 40-character commit sha, or check network access and HF_TOKEN") from None


def _key_inputs(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    src = config.source
    if src.synthetic:
        return {"synthetic": src.synthetic, "generator": SYNTHETIC_GENERATOR_VERSION}
    if src.path:
        path = Path(src.path).expanduser()
        if not (path / "config.json").is_file():
            raise StageError(f"{path} is not a Hugging Face checkpoint (no config.json)", where="source.path",
                             fix="point source.path at a directory holding config.json and *.safetensors")
        return {"path_files": file_hashes(path)}
    return {"hf": src.hf, "revision": _resolve_revision(src.hf, src.revision),
            "allow_pickle": src.allow_pickle, "allow_custom_code": src.allow_custom_code}


def _check_no_custom_code(config: BuildConfig, out_dir: Path) -> None:
    import json

    hf_config = json.loads((out_dir / "config.json").read_text())
    if "auto_map" in hf_config and not config.source.allow_custom_code:
        raise StageError("the checkpoint needs custom code (config.json has auto_map)", where="fetch",
                         fix="use a checkpoint supported natively, or set source.allow_custom_code: true if you trust it")


def _run(config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
    src = config.source
    meta: dict[str, Any] = {}
    if src.synthetic:
        write_synthetic_checkpoint(src.synthetic, out_dir)
        meta["source"] = {"synthetic": src.synthetic}
    elif src.path:
        for p in Path(src.path).expanduser().iterdir():
            if p.is_file():
                shutil.copy2(p, out_dir / p.name)
        meta["source"] = {"path": str(Path(src.path).expanduser().resolve())}
    else:
        from trtpipe.stages.hub import download_snapshot

        revision = _key_inputs(config, inputs)["revision"]
        patterns = ALLOW_PATTERNS + (PICKLE_PATTERNS if src.allow_pickle else [])
        download_snapshot(src.hf, revision, out_dir, patterns)
        meta["source"] = {"hf": src.hf, "revision": revision}
    _check_no_custom_code(config, out_dir)
    meta["files"] = file_hashes(out_dir)
    return meta


STAGE = Stage(name="fetch", version=1, key_inputs=_key_inputs, run=_run)
