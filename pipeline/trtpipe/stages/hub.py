"""Verified downloads from the Hugging Face hub (huggingface_hub does the transfer, resume and progress).

After the download each file is hashed and compared with the sha256 the hub publishes for it (LFS files);
a mismatch is an error that names the file. The token is read from HF_TOKEN and never logged.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

from trtpipe.cache import sha256_file
from trtpipe.errors import StageError


def download_snapshot(repo: str, revision: str, out_dir: Path, allow_patterns: list[str]) -> dict[str, str]:
    from huggingface_hub import HfApi, snapshot_download

    token = os.environ.get("HF_TOKEN") or None
    try:
        info = HfApi().model_info(repo, revision=revision, files_metadata=True, token=token)
        snapshot_download(repo_id=repo, revision=revision, local_dir=str(out_dir), allow_patterns=allow_patterns,
                          token=token)
    except Exception as e:  # noqa: BLE001 - report without echoing request headers (they may hold the token)
        raise StageError(f"download of {repo}@{revision} failed: {type(e).__name__}: {_redact(str(e), token)}",
                         where="fetch", fix="check network access to the hub, the repo id, and HF_TOKEN for gated repos") from None
    expected = {s.rfilename: s.lfs.sha256 for s in (info.siblings or []) if getattr(s, "lfs", None)}
    verified = {}
    for name, sha in expected.items():
        if not any(fnmatch.fnmatch(name, p) for p in allow_patterns):
            continue
        actual = sha256_file(out_dir / name)
        if actual != sha:
            raise StageError(f"{name} from {repo}@{revision} has sha256 {actual}, the hub says {sha}",
                             where="fetch", fix="delete the partial artifact (trtpipe cache gc) and build again")
        verified[name] = sha
    return verified


def _redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text
