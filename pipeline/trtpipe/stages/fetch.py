"""fetch: a Hugging Face-format checkpoint on local disk, with every file's sha256 recorded.

Sources: the project's synthetic checkpoints, a local directory, or a Hugging Face repo at a pinned
revision (resolved to a commit sha, which goes into the cache key and the metadata). From either kind only
the allow-listed files at the root are taken (stages/checkpoint_files.py), hub downloads each verified
against the hub's hash for it (stages/hub.py). A checkpoint without tokenizer.json, with pickled weights only
(unless allowed: then converted to safetensors, stages/pickle_weights.py), needing custom code (unless
allowed), or with a symlink out of its directory is refused here, before anything downstream runs. The hub
token comes from HF_TOKEN in the environment and is never written anywhere.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

from trtpipe.config import BuildConfig
from trtpipe.engine.checkpoint_quant import CheckpointQuant, read_checkpoint_quant
from trtpipe.engine.config import UnsupportedModelError
from trtpipe.errors import SourceError
from trtpipe.integrity import sha256_file
from trtpipe.stages.base import Inputs, Stage, file_hashes
from trtpipe.stages.checkpoint_files import ALLOW_PATTERNS, PICKLE_PATTERNS, local_files, select_files
from trtpipe.stages.pickle_weights import convert_pickles
from trtpipe.stages.steps import InProcess, Step
from trtpipe.stages.synthetic import write_synthetic_checkpoint

SYNTHETIC_GENERATOR_VERSION = 1
_SHA = re.compile(r"^[0-9a-f]{40}$")
# key_inputs and run each resolve the revision, moments apart. Remembering the answer briefly makes them agree
# even if the branch moves in between, without pinning a long-lived process (nightly) to an old commit.
_RESOLVED_TTL_S = 60.0
_resolved: dict[tuple[str | None, str, str], tuple[str, float]] = {}


def _resolve_revision(repo: str, revision: str) -> str:
    """A branch or tag -> the commit sha it points at; a 40-hex sha is used as it is."""
    if _SHA.match(revision):
        return revision
    from trtpipe.stages import hub

    memo_key = (hub.endpoint(), repo, revision)
    sha, at = _resolved.get(memo_key, ("", 0.0))
    if not sha or time.monotonic() - at > _RESOLVED_TTL_S:
        sha = hub.resolve_revision(repo, revision)
        _resolved[memo_key] = (sha, time.monotonic())
    return sha


def _key_inputs(config: BuildConfig, inputs: Inputs) -> dict[str, Any]:
    src = config.source
    if src.synthetic:
        return {"synthetic": src.synthetic, "generator": SYNTHETIC_GENERATOR_VERSION}
    if src.path:
        path = Path(src.path).expanduser()
        # Exactly the files fetch takes: anything else in the directory neither busts nor enters the cache.
        return {"path_files": {name: sha256_file(path / name) for name in local_files(path, src.allow_pickle)},
                "allow_pickle": src.allow_pickle}
    return {"hf": src.hf, "revision": _resolve_revision(src.hf, src.revision),
            "allow_pickle": src.allow_pickle, "allow_custom_code": src.allow_custom_code}


def _check_no_custom_code(config: BuildConfig, out_dir: Path) -> None:
    """auto_map names Python classes shipped with the repo: loading it runs that code."""
    hf_config = json.loads((out_dir / "config.json").read_text())
    if "auto_map" in hf_config and not config.source.allow_custom_code:
        raise SourceError("the checkpoint needs custom code (config.json has auto_map)", where="source",
                         fix="use a checkpoint supported natively, or set source.allow_custom_code: true if you "
                             "trust it")


def _run(config: BuildConfig, inputs: Inputs, out_dir: Path) -> dict[str, Any]:
    src = config.source
    meta: dict[str, Any] = {}
    hashes = None
    if src.synthetic:
        write_synthetic_checkpoint(src.synthetic, out_dir)
        meta["source"] = {"synthetic": src.synthetic}
    elif src.path:
        path = Path(src.path).expanduser()
        for name in local_files(path, src.allow_pickle):
            shutil.copyfile(path / name, out_dir / name)  # the bytes, never a link out of the directory
        meta["source"] = {"path": str(path.resolve())}
    else:
        meta["source"], hashes = _fetch_from_hub(config, out_dir)
    _check_no_custom_code(config, out_dir)
    converted = convert_pickles(out_dir) if src.allow_pickle else {}
    if converted:
        meta["source"]["converted_from_pickle"] = converted
        hashes = None  # the files changed
    meta["files"] = hashes or file_hashes(out_dir)
    quant = checkpoint_quant(out_dir)
    meta["checkpoint_quant"] = quant.to_dict() if quant else None
    return meta


def checkpoint_quant(hf_dir: Path) -> CheckpointQuant | None:
    """The quantization a checkpoint already carries (config.json's quantization_config, ModelOpt's
    hf_quant_config.json), or None; a malformed one is the source's error."""
    try:
        return read_checkpoint_quant(hf_dir)
    except UnsupportedModelError as e:
        raise SourceError(f"cannot read the checkpoint's quantization: {e}", where="source",
                          fix="check config.json's quantization_config (or hf_quant_config.json) as the "
                              "quantizer wrote it") from None


def _fetch_from_hub(config: BuildConfig, out_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(source metadata, {file: sha256}); the files are hashed once, while being verified."""
    from trtpipe.stages import hub

    src = config.source
    listing = hub.list_files(src.hf, _resolve_revision(src.hf, src.revision))
    names = select_files(f"{src.hf}@{listing.commit}", sorted(listing.files), src.allow_pickle)
    # config.json first: a repo that needs custom code is refused before its weights are downloaded.
    verified = hub.download(listing, ["config.json"], out_dir)
    _check_no_custom_code(config, out_dir)
    verified.update(hub.download(listing, [n for n in names if n != "config.json"], out_dir))
    source = {"hf": src.hf, "requested_revision": src.revision, "revision": listing.commit,
              "verified": {name: v["checked_against"] for name, v in sorted(verified.items())}}
    return source, {name: v["sha256"] for name, v in sorted(verified.items())}


def describe_fetch(config: BuildConfig) -> str:
    """What fetch does for this source, in the words the dry run prints (no network: a branch or tag is
    named, not resolved)."""
    import os

    src = config.source
    if src.synthetic:
        lines = [f"in-process: generate the synthetic checkpoint {src.synthetic!r} (seeded random weights, "
                 "trained byte-level BPE tokenizer)"]
    elif src.path:
        lines = [f"copy the checkpoint files of {Path(src.path).expanduser().resolve()} (top level: "
                 f"{' '.join(ALLOW_PATTERNS)}); refuses a symlink that leaves the directory"]
    else:
        pinned = "a commit sha, used as is" if _SHA.match(src.revision) else "a branch or tag, <resolved at build time>"
        lines = [f"download {src.hf}@{src.revision} ({pinned}) with huggingface_hub into its cache "
                 "($HF_HUB_CACHE), then link the files here and check each against the hub's sha256",
                 "files: " + " ".join(ALLOW_PATTERNS + (PICKLE_PATTERNS if src.allow_pickle else [])),
                 f"token: HF_TOKEN from the environment ({'set' if os.environ.get('HF_TOKEN') else 'not set'}; "
                 "never printed or stored)"]
    lines.append("refuses a checkpoint without tokenizer.json, and a config.json with auto_map (custom code)"
                 + (" unless allowed" if src.allow_custom_code else ""))
    if src.allow_pickle:
        lines.append("pickled weights only: converted to safetensors with torch.load(weights_only=True)")
    return "\n".join(lines)


def _plan(config: BuildConfig, inputs: Inputs, out_dir: Path) -> list[Step]:
    return [InProcess(describe_fetch(config), lambda: _run(config, inputs, out_dir))]


# v2: hub downloads are verified against the hub's hashes and limited to the repo root's checkpoint files.
# v3: local sources take only the checkpoint files (symlinks out refused); chat_template.jinja/json taken;
#     pickle-only checkpoints converted to safetensors.
# v4: hf_quant_config.json taken; the checkpoint's own quantization recorded (checkpoint_quant).
STAGE = Stage(name="fetch", version=4, key_inputs=_key_inputs, plan=_plan)
