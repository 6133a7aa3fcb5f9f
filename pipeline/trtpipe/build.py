"""build(config): run the stages, each a cache hit or a fresh build, then publish a new version.

Progress is reported through a callback (the CLI renders it as a live table), so the library prints
nothing itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trtpipe.backend_registry import get_backend
from trtpipe.cache import Artifact, ArtifactCache, cache_key
from trtpipe.config import BuildConfig, load_draft
from trtpipe.errors import ConfigError, StageError
from trtpipe.gate import run_gate
from trtpipe.manifest import Manifest, StageRecord
from trtpipe.preflight import check_free_space
from trtpipe.repo import layout
from trtpipe.repo.versions import PublishedVersion, publish_version
from trtpipe.stages.base import Stage

# (stage, status, seconds, key) where status is "running", "cached", "built", "skipped" or "failed".
ProgressFn = Callable[[str, str, float, str], None]


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


def run_stages(config: BuildConfig, cache: ArtifactCache, force: set[str] = frozenset(),
               progress: ProgressFn = lambda *a: None,
               inputs: dict[str, Artifact] | None = None,
               until: str | None = None) -> tuple[dict[str, Artifact], list[StageRecord]]:
    """Run the backend's stages in order (up to and including `until`, when given). `inputs`: artifacts from
    outside the chain (a draft's checkpoint for a backend that speculates inside its engine), visible to
    every stage's key and recipe."""
    stages = get_backend(config.backend).stages
    unknown = force - {s.name for s in stages}
    if unknown:
        raise ConfigError(f"--force names unknown stage(s) {sorted(unknown)}",
                          fix=f"use one of: {', '.join(s.name for s in stages)}")
    artifacts: dict[str, Artifact] = dict(inputs or {})
    records: list[StageRecord] = []
    previous: Artifact | None = None
    for stage in stages:
        if _is_passthrough(stage, config):
            # Nothing to compute: the next stage reads the previous artifact under this stage's name.
            artifacts[stage.name] = previous
            records.append(StageRecord(stage.name, previous.key, True, 0.0, {"passthrough": True}))
            progress(stage.name, "skipped", 0.0, previous.key)
            continue
        key = stage_key(stage, config, artifacts)
        if stage.name in force:
            existing = cache.get(stage.name, key)
            if existing is not None:
                cache.remove(existing)
        progress(stage.name, "running", 0.0, key)
        t0 = time.perf_counter()
        try:
            artifact, cached = cache.get_or_build(stage.name, key, lambda out: stage.run(config, artifacts, out))
        except Exception:
            progress(stage.name, "failed", time.perf_counter() - t0, key)
            raise
        seconds = time.perf_counter() - t0
        progress(stage.name, "cached" if cached else "built", seconds, key)
        records.append(StageRecord(stage.name, key, cached, round(seconds, 3), artifact.meta))
        artifacts[stage.name] = previous = artifact
        if stage.name == until:
            break
    return artifacts, records


def _check_same_tokenizer(config: BuildConfig, target: Artifact, draft: Artifact) -> None:
    """Draft tokens are verified as target token ids: both models must share one vocabulary."""
    t, d = target.meta["files"].get("tokenizer.json"), draft.meta["files"].get("tokenizer.json")
    if t != d:
        raise ConfigError(f"the draft {config.speculation.draft!r} has a different tokenizer.json than {config.name!r}",
                          where="speculation.draft", fix="choose a draft from the same model family and tokenizer")


def _live_manifest(repo: Path, model: str) -> Manifest | None:
    model_dir = repo / layout.engine_model_name(model)
    live = layout.live_version(model_dir)
    path = model_dir / str(live) / "manifest.json" if live is not None else None
    return Manifest.read(path) if path is not None and path.is_file() else None


def build(config: BuildConfig, repo: Path, *, cache: ArtifactCache | None = None, force: set[str] = frozenset(),
          publish: bool = True, gate: bool = False, progress: ProgressFn = lambda *a: None) -> BuildResult:
    cache = cache or ArtifactCache()
    backend = get_backend(config.backend)
    check_free_space(cache.root, config)
    # Without the backend's toolchain (TensorRT-LLM, a GPU), stop before any work, naming what to use.
    backend.preflight_build(config)
    draft = load_draft(config)
    extra: dict[str, Artifact] = {}
    if draft is not None and backend.draft_is_a_model:
        # The draft is its own published model (`<draft>-engine`); the target's spec names it.
        draft_checkpoint = build(draft, repo, cache=cache, force=force, publish=publish, gate=gate,
                                 progress=lambda stage, *rest: progress(f"draft {stage}", *rest)).checkpoint
    elif draft is not None:
        # The engine speculates itself: the draft's checkpoint becomes part of the target's engine directory.
        fetched, draft_records = run_stages(draft, cache, force, lambda s, *r: progress(f"draft {s}", *r),
                                            until="fetch")
        draft_checkpoint = extra["draft"] = fetched["fetch"]
    artifacts, records = run_stages(config, cache, force, progress, inputs=extra)
    if "draft" in extra:
        records = [StageRecord(f"draft {r.stage}", r.key, r.cached, r.seconds, r.meta) for r in draft_records] + records
    if draft is not None and config.speculation.method == "draft-target":
        _check_same_tokenizer(config, artifacts["fetch"], draft_checkpoint)
    manifest = Manifest(model_name=config.name, backend=config.backend, config=config.model_dump(mode="json"),
                        stages=records)
    live = _live_manifest(repo, config.name)
    if gate and (live is None or live.engine_key != manifest.engine_key):
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
    published = None
    if publish:
        progress("publish", "running", 0.0, "")
        t0 = time.perf_counter()
        try:
            published = publish_version(repo, backend.serving_spec(config), manifest,
                                        engine_dir=artifacts[backend.engine_stage].path,
                                        checkpoint_dir=artifacts["fetch"].path)
        except Exception:
            progress("publish", "failed", time.perf_counter() - t0, "")
            raise
        status = "unchanged" if published.unchanged else "published"
        progress("publish", status, time.perf_counter() - t0, f"v{published.version}")
    return BuildResult(manifest, artifacts[backend.engine_stage], artifacts["fetch"], published)


__all__ = ["build", "run_stages", "BuildResult", "StageError"]
