"""publish_version, rollback, list_versions: the only code that changes a model repository.

A new version is staged beside the live one and renamed into place; then config.pbtxt, which names the
live version, is replaced atomically. A failure before that last step leaves the live version serving.
What a version holds beyond engine/, tokenizer/, spec.json and manifest.json (a Python model, companion
models such as preprocessing/ensemble) and which configs it writes is the backend's (backends/base.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from trtpipe.backend_registry import get_backend
from trtpipe.errors import PublishError
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.repo.model_config import to_pbtxt
from trtpipe.repo.triton_control import reload_models
from trtpipe.spec import ServingSpec
from trtpipe.stages.base import link_or_copy_tree

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                   "tokenizer.model")


@dataclass(frozen=True)
class PublishedVersion:
    model: str
    version: int
    path: Path
    unchanged: bool = False


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
        reload_models(repo, companions)


def publish_version(repo: Path, spec: ServingSpec, manifest: Manifest, engine_dir: Path, checkpoint_dir: Path,
                    keep: int = 3) -> PublishedVersion:
    model_dir = repo / layout.engine_model_name(spec.model_name)
    with _lock(repo):
        live = layout.live_version(model_dir)
        if live is not None:
            live_manifest = model_dir / str(live) / "manifest.json"
            if live_manifest.is_file() and Manifest.read(live_manifest).engine_key == manifest.engine_key:
                return PublishedVersion(spec.model_name, live, model_dir / str(live), unchanged=True)
        backend = get_backend(spec.backend)
        backend.check_can_publish(repo, spec)  # before anything is written
        version = max(layout.versions(model_dir), default=0) + 1
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
            (staging / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                if (checkpoint_dir / name).is_file():
                    shutil.copy2(checkpoint_dir / name, staging / "tokenizer" / name)
            spec.write(staging / "spec.json")
            manifest.version = version
            manifest.write(staging / "manifest.json")
            companions = backend.stage_companions(repo, spec, version, staging / "tokenizer")
            staging.rename(model_dir / str(version))
        except OSError as e:
            shutil.rmtree(staging, ignore_errors=True)
            for path in companions:
                shutil.rmtree(path, ignore_errors=True)
            raise PublishError(f"could not write version {version} of {model_dir.name}: {e}", where=str(repo),
                               fix="check free disk space and permissions; the live version is untouched") from None
        _write_config(model_dir, spec, version)
        reload_models(repo, [model_dir.name])
        _prune(model_dir, keep)
        _prune_companions(repo, model_dir, backend.companion_names(spec))
        return PublishedVersion(spec.model_name, version, model_dir / str(version))


def _prune(model_dir: Path, keep: int) -> None:
    live = layout.live_version(model_dir)
    old = [v for v in layout.versions(model_dir) if v != live]
    for v in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(model_dir / str(v), ignore_errors=True)


def _prune_companions(repo: Path, model_dir: Path, names: list[str]) -> None:
    """Keep exactly the versions `<model>-engine` keeps, so every rollback target has its whole set."""
    kept = set(layout.versions(model_dir))
    for name in names:
        for v in layout.versions(repo / name):
            if v not in kept:
                shutil.rmtree(repo / name / str(v), ignore_errors=True)


def rollback(repo: Path, model: str, to_version: int | None = None) -> int:
    """Make an older version live again; returns it. Without --to, the newest version older than live."""
    model_dir = repo / layout.engine_model_name(model)
    with _lock(repo):
        live = layout.live_version(model_dir)
        if live is None:
            raise PublishError(f"model {model!r} is not published in {repo}", where="rollback",
                               fix=f"publish it first (trtpipe build {model}) or check --repo")
        available = layout.versions(model_dir)
        if to_version is None:
            older = [v for v in available if v < live]
            if not older:
                raise PublishError(f"{model} has no version older than the live version {live}", where="rollback",
                                   fix=f"available versions: {available}")
            to_version = older[-1]
        if to_version not in available:
            raise PublishError(f"{model} has no version {to_version}", where="rollback",
                               fix=f"choose one of {available}")
        spec = ServingSpec.read(model_dir / str(to_version) / "spec.json")
        _write_config(model_dir, spec, to_version)
        reload_models(repo, [model_dir.name])
        return to_version


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
