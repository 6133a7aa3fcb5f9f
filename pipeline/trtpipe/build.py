"""build(config): run the stages, each a cache hit or a fresh build, then publish a new version.

One build writes a model at a time: a second build of the same model waits for the first (a file lock in
the repository) and then, finding the identical version published, does nothing. Every cache hit is checked
against the file hashes its entry recorded, and publish checks every file it stages from the cache; when a
file does not match, the entry is discarded and the stages run once more, verifying every hit in full.

Progress is reported through a callback (the CLI renders it as a live table), so the library prints
nothing itself.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from filelock import Timeout

from trtpipe.backend_registry import get_backend
from trtpipe.cache import Artifact, ArtifactCache, CorruptEntryError, cache_key
from trtpipe.config import BuildConfig, load_draft
from trtpipe.errors import ConfigError, IntegrityError, StageError, disk_full, is_disk_full
from trtpipe.gate import run_gate
from trtpipe.manifest import Manifest, StageRecord
from trtpipe.preflight import check_free_space
from trtpipe.repo import layout
from trtpipe.repo.retention import DEFAULT_KEEP
from trtpipe.repo.versions import CorruptSourceError, PublishedVersion, publish_version
from trtpipe.stages.base import Stage
from trtpipe.stages.fetch import checkpoint_quant
from trtpipe.stages.tokenizer_compat import check_same_tokenizer

# (stage, status, seconds, key) where status is "running", "cached", "built", "skipped", "waiting" or "failed".
ProgressFn = Callable[[str, str, float, str], None]
log = logging.getLogger("trtpipe.build")


@dataclass(frozen=True)
class BuildResult:
    manifest: Manifest
    engine: Artifact
    checkpoint: Artifact
    published: PublishedVersion | None


def _is_passthrough(stage: Stage, config: BuildConfig) -> bool:
    return stage.passthrough(config) is not None


def stage_key(stage: Stage, config: BuildConfig, artifacts: dict[str, Artifact]) -> str:
    """The cache key of `stage` given its inputs: decided before it runs (the dry run prints this one)."""
    return cache_key({"stage": stage.name, "version": stage.version, **stage.key_inputs(config, artifacts)})


def _verify_inputs(cache: ArtifactCache, artifacts: dict[str, Artifact], trusted: set[str]) -> None:
    """A stage that runs reads its inputs: each must match its record in full (not just its sizes and mtimes),
    unless this build wrote or fully checked it already. A mismatch discards the input."""
    for artifact in {a.key: a for a in artifacts.values() if a is not None}.values():
        if artifact.key in trusted:
            continue
        try:
            cache.verify(artifact)
        except IntegrityError as e:
            cache.remove(artifact)
            raise CorruptEntryError(e.what, where=e.where, fix=e.fix, path=e.path) from None
        trusted.add(artifact.key)


def _run_stage(stage: Stage, config: BuildConfig, cache: ArtifactCache, key: str, artifacts: dict[str, Artifact],
               fast: bool, trusted: set[str]) -> tuple[Artifact, bool]:
    def run(out: Path) -> dict:
        _verify_inputs(cache, artifacts, trusted)
        return stage.run(config, artifacts, out)

    try:
        artifact, cached = cache.get_or_build(stage.name, key, run, fast=fast,
                                              inputs=[a for a in artifacts.values() if a is not None])
        if not cached or not fast:
            trusted.add(key)
        return artifact, cached
    except OSError as e:
        if is_disk_full(e):
            raise disk_full(e, where=f"stage {stage.name}", writing=f"the {stage.name} artifact under "
                                                                    f"{cache.root}") from None
        raise


def run_stages(config: BuildConfig, cache: ArtifactCache, force: set[str] = frozenset(),
               progress: ProgressFn = lambda *a: None,
               inputs: dict[str, Artifact] | None = None,
               until: str | None = None, *, fast: bool = True) -> tuple[dict[str, Artifact], list[StageRecord]]:
    """Run the backend's stages in order (up to and including `until`, when given). `inputs`: artifacts from
    outside the chain (a draft's checkpoint for a backend that speculates inside its engine), visible to
    every stage's key and recipe. `fast`: a cache hit whose files keep their recorded size and mtime is not
    hashed again (False: every hit is hashed in full)."""
    stages = get_backend(config.backend).stages
    unknown = force - {s.name for s in stages}
    if unknown:
        raise ConfigError(f"--force names unknown stage(s) {sorted(unknown)}",
                          fix=f"use one of: {', '.join(s.name for s in stages)}")
    artifacts: dict[str, Artifact] = dict(inputs or {})
    records: list[StageRecord] = []
    previous: Artifact | None = None
    trusted: set[str] = set()  # keys of the entries this run wrote or hashed in full
    for stage in stages:
        if _is_passthrough(stage, config):
            # Nothing to compute: the next stage reads the previous artifact under this stage's name.
            artifacts[stage.name] = previous
            records.append(StageRecord(stage.name, previous.key, True, 0.0, {"passthrough": True}))
            progress(stage.name, "skipped", 0.0, previous.key)
            continue
        key = stage_key(stage, config, artifacts)
        if stage.name in force:
            existing = cache.get(stage.name, key, verify=False)
            if existing is not None:
                cache.remove(existing)
        progress(stage.name, "running", 0.0, key)
        t0 = time.perf_counter()
        try:
            artifact, cached = _run_stage(stage, config, cache, key, artifacts, fast, trusted)
        except Exception:
            progress(stage.name, "failed", time.perf_counter() - t0, key)
            raise
        seconds = time.perf_counter() - t0
        progress(stage.name, "cached" if cached else "built", seconds, key)
        records.append(StageRecord(stage.name, key, cached, round(seconds, 3), artifact.meta))
        artifacts[stage.name] = previous = artifact
        if stage.name == "fetch":
            # Before any stage reads the weights: a format the backend cannot serve, or `quantization:` over
            # an already quantized checkpoint, stops here (a cached fetch is checked too: the config may differ).
            get_backend(config.backend).check_checkpoint_quant(config, checkpoint_quant(artifact.path))
        if stage.name == until:
            break
    return artifacts, records


def _live_manifest(repo: Path, model: str) -> Manifest | None:
    model_dir = repo / layout.engine_model_name(model)
    live = layout.live_version(model_dir)
    path = model_dir / str(live) / "manifest.json" if live is not None else None
    return Manifest.read(path) if path is not None and path.is_file() else None


@dataclass(frozen=True)
class _Request:
    """One build's settings, handed from build() to the steps it runs."""

    config: BuildConfig
    repo: Path
    cache: ArtifactCache
    force: set[str]
    publish: bool
    gate: bool
    progress: ProgressFn
    keep: int


def build(config: BuildConfig, repo: Path, *, cache: ArtifactCache | None = None, force: set[str] = frozenset(),
          publish: bool = True, gate: bool = False, progress: ProgressFn = lambda *a: None,
          keep: int = DEFAULT_KEEP) -> BuildResult:
    request = _Request(config, repo, cache or ArtifactCache(), set(force), publish, gate, progress, keep)
    check_free_space(request.cache.root, config)
    # Without the backend's toolchain (TensorRT-LLM, a GPU), stop before any work, naming what to use.
    get_backend(config.backend).preflight_build(config)
    lock = layout.writer_lock(repo, config.name)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress("wait", "waiting", 0.0, f"another build of {config.name}")
        lock.acquire()
    try:
        try:
            return _build_locked(request, fast=True)
        except CorruptEntryError as e:
            log.warning("%s; discarded it, building again and hashing every cached file in full", e.what)
            return _build_locked(request, fast=False)
    finally:
        lock.release()


def _build_draft(request: _Request, draft: BuildConfig, fast: bool) -> tuple[Artifact, dict[str, Artifact],
                                                                           list[StageRecord]]:
    """(the draft's checkpoint, artifacts the target's stages see, records for the target's manifest)."""
    progress = request.progress
    if get_backend(request.config.backend).draft_is_a_model:
        # The draft is its own published model (`<draft>-engine`); the target's spec names it.
        result = build(draft, request.repo, cache=request.cache, force=request.force, publish=request.publish,
                       gate=request.gate, progress=lambda stage, *rest: progress(f"draft {stage}", *rest),
                       keep=request.keep)
        return result.checkpoint, {}, []
    # The engine speculates itself: the draft's checkpoint becomes part of the target's engine directory.
    fetched, records = run_stages(draft, request.cache, request.force, lambda s, *r: progress(f"draft {s}", *r),
                                  until="fetch", fast=fast)
    records = [StageRecord(f"draft {r.stage}", r.key, r.cached, r.seconds, r.meta) for r in records]
    return fetched["fetch"], {"draft": fetched["fetch"]}, records


def _build_locked(request: _Request, fast: bool) -> BuildResult:
    config, backend = request.config, get_backend(request.config.backend)
    draft = load_draft(config)
    if draft is not None and draft.name == config.name:
        raise ConfigError(f"{config.name} names itself as its draft", where="speculation.draft",
                          fix="name a smaller model's build config")
    extra, draft_records, draft_checkpoint = {}, [], None
    if draft is not None:
        draft_checkpoint, extra, draft_records = _build_draft(request, draft, fast)
    artifacts, records = run_stages(config, request.cache, request.force, request.progress, inputs=extra, fast=fast)
    if draft is not None and config.speculation.method == "draft-target":
        check_same_tokenizer(config, artifacts["fetch"].path, draft_checkpoint.path)
    manifest = Manifest(model_name=config.name, backend=config.backend, config=config.model_dump(mode="json"),
                        stages=draft_records + records)
    if request.gate:
        _gate(request, manifest, artifacts)
    published = _publish(request, manifest, artifacts) if request.publish else None
    return BuildResult(manifest, artifacts[backend.engine_stage], artifacts["fetch"], published)


def _gate(request: _Request, manifest: Manifest, artifacts: dict[str, Artifact]) -> None:
    """Run the backend's gate unless the live version has this very engine; raise when it fails."""
    config, backend, progress = request.config, get_backend(request.config.backend), request.progress
    live = _live_manifest(request.repo, config.name)
    if live is not None and live.engine_key == manifest.engine_key:
        return
    progress("gate", "running", 0.0, "")
    t0 = time.perf_counter()
    result = run_gate(config, artifacts[backend.engine_stage].path, artifacts["fetch"].path,
                      artifacts["quantize"].key, live)
    manifest.gate = result.to_dict()
    progress("gate", "skipped" if result.skipped else ("passed" if result.passed else "failed"),
             time.perf_counter() - t0, "")
    if not result.passed:
        raise StageError("the new engine failed its gate:\n  " + "\n  ".join(result.failures), where="gate",
                         fix="nothing was published; the live version keeps serving. Inspect the change, "
                             "or adjust the config's gate section if the threshold is wrong")


def _publish(request: _Request, manifest: Manifest, artifacts: dict[str, Artifact]) -> PublishedVersion:
    """Publish, checking every staged file against its cache entry; a corrupt entry is discarded (and the
    CorruptSourceError re-raised, so build() runs the stages again)."""
    config, backend, cache = request.config, get_backend(request.config.backend), request.cache
    engine, checkpoint = artifacts[backend.engine_stage], artifacts["fetch"]
    request.progress("publish", "running", 0.0, "")
    t0 = time.perf_counter()
    try:
        published = publish_version(request.repo, backend.serving_spec(config), manifest, engine_dir=engine.path,
                                    checkpoint_dir=checkpoint.path, keep=request.keep,
                                    engine_files=cache.contents(engine), checkpoint_files=cache.contents(checkpoint))
    except CorruptSourceError as e:
        cache.remove(engine if e.source == "engine" else checkpoint)
        request.progress("publish", "failed", time.perf_counter() - t0, "")
        raise
    except Exception:
        request.progress("publish", "failed", time.perf_counter() - t0, "")
        raise
    status = "published" if not published.unchanged else ("unchanged" if published.is_live else "not live")
    request.progress("publish", status, time.perf_counter() - t0, f"v{published.version}")
    return published


__all__ = ["build", "run_stages", "BuildResult", "StageError"]
