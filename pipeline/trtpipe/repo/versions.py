"""publish_version, rollback, list_versions: the only code that changes a model repository.

A new version is staged beside the live one and renamed into place; then config.pbtxt, which names the
live version, is replaced atomically. A failure before that last step leaves the live version serving.
What a version holds beyond engine/, tokenizer/, spec.json and manifest.json (a Python model, companion
models such as preprocessing/ensemble) and which configs it writes is the backend's (backends/base.py).

Every file staged is hashed once: the hashes go into the version's manifest (`files`), and files that come
from cache entries must have the sha256 the entry recorded, or the publish stops (CorruptSourceError, naming
the file and the entry) before anything is live. Rollback checks its target the same way (repo/verify.py).
Which version was live before which is recorded (repo/history.py), and old versions are retired by
repo/retention.py.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

from filelock import FileLock

from trtpipe.backend_registry import get_backend
from trtpipe.cache import CorruptEntryError
from trtpipe.errors import PublishError, disk_full, is_disk_full
from trtpipe.integrity import hash_tree
from trtpipe.manifest import Manifest
from trtpipe.repo import history, layout
from trtpipe.repo.model_config import to_pbtxt
from trtpipe.repo.retention import DEFAULT_KEEP, check_keep, prune
from trtpipe.repo.tokenizer_dir import TOKENIZER_FILES, write_tokenizer_dir  # noqa: F401 - TOKENIZER_FILES: re-exported
from trtpipe.repo.triton_control import reload_models
from trtpipe.repo.verify import MANIFEST, require_intact
from trtpipe.spec import ServingSpec
from trtpipe.stages.base import link_or_copy_tree



@dataclass(frozen=True)
class PublishedVersion:
    model: str
    version: int
    path: Path
    unchanged: bool = False  # an identical version (same engine, same serving spec) was already published
    is_live: bool = True  # False: identical to a kept version that is not live (it was rolled back from)


class CorruptSourceError(CorruptEntryError):
    """A file staged from a cache entry does not have the sha256 the entry recorded; `source` says which entry
    ("engine" or "checkpoint"), so build() can discard it and build it again."""

    def __init__(self, source: str, rel: str, why: str):
        self.source = source
        super().__init__(f"the {source} cache entry's {rel} {why}", where="publish", path=rel,
                         fix="build again: trtpipe build discards the entry and rebuilds it; nothing was published")


def _lock(repo: Path) -> FileLock:
    repo.mkdir(parents=True, exist_ok=True)
    return FileLock(str(repo / ".trtpipe-publish.lock"))


def _write_config(model_dir: Path, spec: ServingSpec, live: int) -> None:
    """Point every model of the set at version `live`, the engine's config last (it makes the version live).
    The caller reloads the engine model; the companions are reloaded here."""
    repo = model_dir.parent
    backend = get_backend(spec.backend)
    configs = backend.model_configs(repo, spec, live)
    missing = [name for name in configs if not (repo / name / str(live)).is_dir()]
    if missing:
        raise PublishError(f"version {live} of {', '.join(missing)} is missing", where=str(repo),
                           fix=f"publish {spec.model_name} again (its model set is incomplete); nothing was changed")
    for name, cfg in configs.items():
        layout.write_atomically(repo / name / "config.pbtxt", to_pbtxt(cfg))
    companions = backend.companion_names(spec)
    if companions:
        reload_models(repo, companions, live)


def identical_version(model_dir: Path, spec: ServingSpec, manifest: Manifest) -> int | None:
    """The kept version with the same engine and the same serving spec, if any (the live one first)."""
    live = layout.live_version(model_dir)
    for version in sorted(layout.versions(model_dir), key=lambda v: v != live):
        vdir = model_dir / str(version)
        try:
            same_engine = Manifest.read(vdir / MANIFEST).engine_key == manifest.engine_key
            same_spec = same_engine and asdict(ServingSpec.read(vdir / "spec.json")) == asdict(spec)
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable version is never "the same"; `trtpipe verify` reports it
        if same_spec:
            return version
    return None


def publish_version(repo: Path, spec: ServingSpec, manifest: Manifest, engine_dir: Path, checkpoint_dir: Path,
                    keep: int = DEFAULT_KEEP, *, engine_files: Mapping[str, str] | None = None,
                    checkpoint_files: Mapping[str, str] | None = None) -> PublishedVersion:
    """Publish the engine as the next version and make it live, unless an identical version is kept already.

    `engine_files` / `checkpoint_files`: the sha256 each source file must have (its cache entry's record);
    a mismatch raises CorruptSourceError before anything is live."""
    check_keep(keep)
    model_dir = repo / layout.engine_model_name(spec.model_name)
    with _lock(repo):
        same = identical_version(model_dir, spec, manifest)
        live = layout.live_version(model_dir)
        if same is not None:
            return PublishedVersion(spec.model_name, same, model_dir / str(same), unchanged=True, is_live=same == live)
        backend = get_backend(spec.backend)
        backend.check_can_publish(repo, spec)  # before anything is written
        version = max(layout.versions(model_dir), default=0) + 1
        _stage_version(repo, model_dir, spec, manifest, version, engine_dir, checkpoint_dir,
                       {"engine": engine_files, "checkpoint": checkpoint_files})
        _write_config(model_dir, spec, version)
        history.record(model_dir, "publish", version, live)
        reload_models(repo, [model_dir.name], version)  # a retired number can come back
        prune(model_dir, keep, backend.companion_names(spec))
        return PublishedVersion(spec.model_name, version, model_dir / str(version))


def _stage_version(repo: Path, model_dir: Path, spec: ServingSpec, manifest: Manifest, version: int,
                   engine_dir: Path, checkpoint_dir: Path, expected: dict[str, Mapping[str, str] | None]) -> None:
    """Write `<model>-engine/<version>` (and the companions' versions) complete, or nothing at all."""
    backend = get_backend(spec.backend)
    for abandoned in model_dir.glob(".staging-*"):  # left by a publish that was killed
        shutil.rmtree(abandoned, ignore_errors=True)
    staging = model_dir / f".staging-{version}"
    companions: list[Path] = []  # e.g. the -preprocessing/-postprocessing/-ensemble versions
    try:
        staging.mkdir(parents=True)
        for name, source in backend.engine_version_files().items():
            if not source.is_file():
                raise PublishError(f"the Triton adapter {source} is missing", where="publish",
                                   fix="install trtpipe from a source checkout: pip install -e .")
            shutil.copy2(source, staging / name)
        link_or_copy_tree(engine_dir, staging / "engine")
        verbatim = write_tokenizer_dir(checkpoint_dir, staging / "tokenizer")
        spec.write(staging / "spec.json")
        companions = backend.stage_companions(repo, spec, version, staging / "tokenizer")
        manifest.version = version
        manifest.files = hash_tree(staging)
        _check_sources(manifest.files, expected, {f"tokenizer/{name}" for name in verbatim})
        manifest.companion_files = {p.parent.name: hash_tree(p) for p in companions}
        manifest.write(staging / MANIFEST)
        staging.rename(model_dir / str(version))
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        for path in companions:
            shutil.rmtree(path, ignore_errors=True)
        if is_disk_full(e):
            raise disk_full(e, where=str(repo), writing=f"version {version} of {model_dir.name} (the live version is "
                                                                 "untouched)") from None
        if isinstance(e, OSError):
            raise PublishError(f"could not write version {version} of {model_dir.name}: {e}", where=str(repo),
                               fix="check free disk space and permissions; the live version is untouched") from None
        raise


def _check_sources(staged: dict[str, str], expected: dict[str, Mapping[str, str] | None],
                   verbatim_tokenizer: set[str]) -> None:
    """Files staged from cache entries must have the sha256 the entries recorded for them (engine/ all of
    them, tokenizer/ those copied byte for byte)."""
    for source, prefix in (("engine", "engine/"), ("checkpoint", "tokenizer/")):
        recorded = expected.get(source)
        if recorded is None:
            continue
        for rel, sha in staged.items():
            if not rel.startswith(prefix) or (prefix == "tokenizer/" and rel not in verbatim_tokenizer):
                continue
            want = recorded.get(rel[len(prefix):])
            want = want["sha256"] if isinstance(want, Mapping) else want
            if want is None:
                raise CorruptSourceError(source, rel[len(prefix):], "has no recorded sha256")
            if want != sha:
                raise CorruptSourceError(source, rel[len(prefix):], f"has sha256 {sha[:16]}…, recorded {want[:16]}…")


def rollback(repo: Path, model: str, to_version: int | None = None) -> int:
    """Make an older version live again, after checking its files; returns it. Without `to_version`, the version
    that was live before the live one (repo/history.py)."""
    model_dir = repo / layout.engine_model_name(model)
    with _lock(repo):
        live = layout.live_version(model_dir)
        if live is None:
            raise PublishError(f"model {model!r} is not published in {repo}", where="rollback",
                               fix=f"publish it first (trtpipe build {model}) or check --repo")
        available = layout.versions(model_dir)
        target = to_version if to_version is not None else history.previous_live(model_dir, live, available)
        if target is None:
            raise PublishError(f"{model} has no kept version that was live before version {live}", where="rollback",
                               fix=f"name one with --to (kept versions: {available})")
        if target not in available:
            raise PublishError(f"{model} has no version {target}", where="rollback",
                               fix=f"choose one of {available}")
        require_intact(repo, model, target, action="roll back")
        spec = ServingSpec.read(model_dir / str(target) / "spec.json")
        _write_config(model_dir, spec, target)
        history.record(model_dir, "rollback" if to_version is None else "activate", target, live)
        reload_models(repo, [model_dir.name], target)
        return target


def retire(repo: Path, keep: int) -> dict[str, list[int]]:
    """Apply the retention policy to every published model; returns {model: retired versions}."""
    check_keep(keep)
    retired = {}
    with _lock(repo):
        for model in layout.published_models(repo):
            model_dir = repo / layout.engine_model_name(model)
            spec = ServingSpec.read(model_dir / str(layout.live_version(model_dir)) / "spec.json")
            gone = prune(model_dir, keep, get_backend(spec.backend).companion_names(spec))
            if gone:
                retired[model] = gone
    return retired


def referenced_stage_keys(repo: Path) -> set[str]:
    """Every stage key any kept version of any model was built from (what `cache gc` must not delete)."""
    keys: set[str] = set()
    if not repo.is_dir():
        return keys
    for model_dir in repo.iterdir():
        for v in layout.versions(model_dir):
            manifest = model_dir / str(v) / "manifest.json"
            if manifest.is_file():
                keys.update(s.key for s in Manifest.read(manifest).stages)
    return keys


def list_versions(repo: Path) -> list[dict]:
    rows = []
    for model in layout.published_models(repo):
        model_dir = repo / layout.engine_model_name(model)
        live = layout.live_version(model_dir)
        manifest = Manifest.read(model_dir / str(live) / "manifest.json")
        rows.append({"model": model, "live": live, "versions": layout.versions(model_dir),
                     "backend": manifest.backend, "engine_key": manifest.engine_key[:12],
                     "created_at": manifest.created_at})
    return rows
