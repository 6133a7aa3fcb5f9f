"""publish_version, rollback, list_versions: the only code that changes a model repository.

A new version is staged beside the live one and renamed into place; then config.pbtxt, which names the
live version, is replaced atomically. A failure before that last step leaves the live version serving.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from trtpipe.errors import PublishError
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.repo.triton_control import reload_models
from trtpipe.repo.model_config import reference_engine_config, to_pbtxt
from trtpipe.spec import ServingSpec
from trtpipe.stages.base import link_or_copy_tree

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json",
                   "tokenizer.model")
ADAPTER = Path(__file__).resolve().parents[3] / "model_repo" / "engine" / "1" / "model.py"


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
    if spec.backend == "reference":
        text = to_pbtxt(reference_engine_config(spec, model_dir.name, live))
        layout.write_atomically(model_dir / "config.pbtxt", text)
    else:
        from trtpipe.trt.publish import companion_names, write_model_set_configs

        # The whole set (preprocessing, postprocessing, ensemble, then the engine) moves to `live`; the
        # tensorrtllm backend opens engine_dir exactly as given, an absolute path into the version. The
        # caller reloads the engine model, as for the reference backend; the companions are reloaded here.
        write_model_set_configs(model_dir.parent, spec, live)
        reload_models(model_dir.parent, companion_names(spec))


def publish_version(repo: Path, spec: ServingSpec, manifest: Manifest, engine_dir: Path, checkpoint_dir: Path,
                    keep: int = 3) -> PublishedVersion:
    model_dir = repo / layout.engine_model_name(spec.model_name)
    with _lock(repo):
        live = layout.live_version(model_dir)
        if live is not None:
            live_manifest = model_dir / str(live) / "manifest.json"
            if live_manifest.is_file() and Manifest.read(live_manifest).engine_key == manifest.engine_key:
                return PublishedVersion(spec.model_name, live, model_dir / str(live), unchanged=True)
        if spec.backend != "reference":
            from trtpipe.trt import publish as trt_publish

            trt_publish.check_can_publish(repo, spec)  # before anything is written
        version = max(layout.versions(model_dir), default=0) + 1
        for abandoned in model_dir.glob(".staging-*"):  # left by a publish that was killed
            shutil.rmtree(abandoned, ignore_errors=True)
        staging = model_dir / f".staging-{version}"
        companions: list[Path] = []  # trt-engine: the -preprocessing/-postprocessing/-ensemble versions
        try:
            staging.mkdir(parents=True)
            if spec.backend == "reference":
                if not ADAPTER.is_file():
                    raise PublishError(f"the Triton adapter {ADAPTER} is missing", where="publish",
                                       fix="install trtpipe from a source checkout: pip install -e .")
                shutil.copy2(ADAPTER, staging / "model.py")
            link_or_copy_tree(engine_dir, staging / "engine")
            (staging / "tokenizer").mkdir()
            for name in TOKENIZER_FILES:
                if (checkpoint_dir / name).is_file():
                    shutil.copy2(checkpoint_dir / name, staging / "tokenizer" / name)
            spec.write(staging / "spec.json")
            manifest.version = version
            manifest.write(staging / "manifest.json")
            if spec.backend != "reference":
                companions = trt_publish.stage_companions(repo, spec, version, staging / "tokenizer")
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
        if spec.backend != "reference":
            trt_publish.prune_companions(repo, spec)
        return PublishedVersion(spec.model_name, version, model_dir / str(version))


def _prune(model_dir: Path, keep: int) -> None:
    live = layout.live_version(model_dir)
    old = [v for v in layout.versions(model_dir) if v != live]
    for v in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(model_dir / str(v), ignore_errors=True)


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
