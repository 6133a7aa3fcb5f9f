"""Verified downloads from the Hugging Face hub; huggingface_hub does the transfer, the resume and the progress.

Files go into huggingface_hub's own cache (HF_HUB_CACHE) first, so a rerun after a failure downloads only
what is missing, and the client's retry resumes a dropped transfer with a `Range` request. Each file is then
linked (or copied) into the artifact and hashed: an LFS file must have the sha256 the hub publishes for it,
a small file the git blob id. The endpoint comes from HF_ENDPOINT (a mirror, or the tests' local hub) and
the token from HF_TOKEN; the token is handed to the client and never logged, stored or put in a message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from trtpipe.cache import sha256_file
from trtpipe.errors import StageError


@dataclass(frozen=True)
class HubFile:
    name: str
    size: int | None
    lfs_sha256: str | None  # LFS files: the sha256 of the content
    blob_id: str | None  # git's sha1 of the blob; for an LFS file that is the pointer's, not the content's


@dataclass(frozen=True)
class RepoListing:
    repo: str
    commit: str
    files: dict[str, HubFile]


def endpoint() -> str | None:
    """Read at call time: huggingface_hub reads HF_ENDPOINT once, at import."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or None


def _token() -> str | None:
    # None lets huggingface_hub fall back to a token saved by `hf auth login`.
    return os.environ.get("HF_TOKEN") or None


def resolve_revision(repo: str, revision: str) -> str:
    """The commit sha a branch or tag points at now."""
    return _listing(repo, revision, files_metadata=False).commit


def list_files(repo: str, commit: str) -> RepoListing:
    """Every file of the repo at `commit`, with the sizes and hashes the hub publishes."""
    return _listing(repo, commit, files_metadata=True)


def download(listing: RepoListing, names: list[str], out_dir: Path) -> dict[str, dict[str, str]]:
    """Download `names` at the listing's commit into out_dir and verify each: {name: {sha256, checked_against}}."""
    from huggingface_hub import snapshot_download

    try:
        # Exact names as patterns: snapshot_download then fetches just these, in parallel, with progress bars.
        snapshot = Path(snapshot_download(listing.repo, revision=listing.commit, allow_patterns=names,
                                          cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                          endpoint=endpoint(), token=_token()))
    except Exception as e:  # noqa: BLE001 - every client failure becomes one StageError without the token
        raise _hub_error(e, listing.repo, listing.commit) from None
    verified = {}
    for name in names:
        cached = snapshot / name
        if not cached.is_file():
            raise StageError(f"{name} of {listing.repo}@{listing.commit} is listed by the hub but was not downloaded",
                             where="fetch", fix="build again; if it persists, check the hub (or HF_ENDPOINT mirror)")
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(cached.resolve(), target)  # the cache's blobs are never modified in place
        except OSError:
            shutil.copyfile(cached, target)
        verified[name] = _verify(listing, listing.files[name], target, cached)
    return verified


def _verify(listing: RepoListing, f: HubFile, path: Path, cached: Path) -> dict[str, str]:
    """Check the file against the hub's hash for it (LFS: sha256; small files: git blob id)."""
    sha256 = sha256_file(path)
    if f.lfs_sha256 is not None:
        kind, expected, actual = "sha256", f.lfs_sha256, sha256
    elif f.blob_id is not None:
        kind, expected, actual = "git blob id", f.blob_id, _git_blob_id(path)
    else:
        # A hub that publishes no hash for a file (some mirrors) leaves nothing to check it against.
        return {"sha256": sha256, "checked_against": "nothing (the hub published no hash)"}
    if actual != expected:
        _forget(cached)
        raise StageError(f"{f.name} of {listing.repo}@{listing.commit} is corrupt: its {kind} is {actual}, "
                         f"the hub says {expected}", where="fetch",
                         fix="build again: the bad copy was removed from the download cache. If it recurs, the "
                             "hub or a proxy on the way (see HF_ENDPOINT) serves corrupt data")
    return {"sha256": sha256, "checked_against": f"hub {kind}"}


def _forget(cached: Path) -> None:
    """Drop a bad file from huggingface_hub's cache so the next run downloads it again instead of reusing it."""
    blob = cached.resolve()
    cached.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def _git_blob_id(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _listing(repo: str, revision: str, files_metadata: bool) -> RepoListing:
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo, revision=revision, files_metadata=files_metadata,
                                                      token=_token())
    except Exception as e:  # noqa: BLE001 - see _hub_error
        raise _hub_error(e, repo, revision) from None
    files = {s.rfilename: HubFile(s.rfilename, s.size, s.lfs.sha256 if s.lfs else None, s.blob_id)
             for s in info.siblings or []}
    return RepoListing(repo, info.sha, files)


def _hub_error(e: Exception, repo: str, revision: str) -> StageError:
    """What failed, in the client's words (first line, token masked), and the fix for that kind of failure."""
    # From .utils, not .errors: older supported versions (0.23) have no huggingface_hub.errors.
    from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    first_line = (str(e).strip().splitlines() or [""])[0]
    detail = f"{type(e).__name__}: {_redact(first_line)}"
    host = _host(endpoint() or "https://huggingface.co")
    at = f"{repo}@{revision} on {host}"
    if isinstance(e, RevisionNotFoundError):
        return StageError(f"revision {revision!r} not found in {repo} on {host} ({detail})", where="source.revision",
                          fix="pin source.revision to an existing commit sha, tag or branch of the repo")
    if isinstance(e, (GatedRepoError, RepositoryNotFoundError)):
        return StageError(f"cannot access {at} ({detail})", where="source.hf",
                          fix="check the repo id; for a gated or private repo accept its terms on the hub and "
                              "export HF_TOKEN with a token that has read access")
    return StageError(f"download of {at} failed ({detail})", where="fetch",
                      fix="check network access to the hub (or set HF_ENDPOINT to a reachable mirror) and build "
                          "again; files already downloaded are kept and not fetched twice")


def _redact(text: str) -> str:
    token = _token()
    return text.replace(token, "***") if token else text


def _host(url: str) -> str:
    """scheme://host[:port] only: an endpoint URL may carry credentials of its own."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
