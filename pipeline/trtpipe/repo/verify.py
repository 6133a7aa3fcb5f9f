"""Check a published version against the sha256 its manifest records for each of its files.

Rollback checks its target before making it live; `trtpipe verify [MODEL [VERSION]]` checks any.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trtpipe.errors import IntegrityError, PublishError
from trtpipe.integrity import mismatches
from trtpipe.manifest import Manifest
from trtpipe.repo import layout

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class VersionCheck:
    model: str
    version: int
    is_live: bool
    num_files: int
    problems: list[str] = field(default_factory=list)  # "path: what is wrong", paths relative to the repository

    @property
    def ok(self) -> bool:
        return not self.problems


def check_version(repo: Path, model: str, version: int) -> VersionCheck:
    """Hash every file of `<model>-engine/<version>/` (and of its companions' versions) and compare."""
    model_dir = repo / layout.engine_model_name(model)
    vdir = model_dir / str(version)
    live = layout.live_version(model_dir) == version
    try:
        manifest = Manifest.read(vdir / MANIFEST)
    except (OSError, ValueError, KeyError, TypeError) as e:
        return VersionCheck(model, version, live, 0, [f"{vdir.name}/{MANIFEST}: unreadable ({e})"])
    if not manifest.files:
        return VersionCheck(model, version, live, 0, [f"{model_dir.name}/{version}: its manifest records no file "
                                                      "hashes (published before trtpipe recorded them)"])
    problems = [f"{model_dir.name}/{version}/{rel}: {why}"
                for rel, why in mismatches(vdir, manifest.files, (MANIFEST,))]
    for name, files in sorted(manifest.companion_files.items()):
        problems += [f"{name}/{version}/{rel}: {why}" for rel, why in mismatches(repo / name / str(version), files)]
    num_files = len(manifest.files) + sum(len(f) for f in manifest.companion_files.values())
    return VersionCheck(model, version, live, num_files, problems)


def require_intact(repo: Path, model: str, version: int, *, action: str) -> None:
    """Raise IntegrityError naming the first bad file unless the version matches its manifest."""
    check = check_version(repo, model, version)
    if not check.ok:
        more = f" (and {len(check.problems) - 1} more)" if len(check.problems) > 1 else ""
        raise IntegrityError(f"refusing to {action}: version {version} of {model} does not match its manifest: "
                             f"{check.problems[0]}{more}", where=str(repo),
                             fix=f"choose another version (trtpipe models), or rebuild it (trtpipe build {model}); "
                                 f"`trtpipe verify {model}` checks every kept version",
                             path=check.problems[0].split(":")[0])


def check_repository(repo: Path, model: str | None = None, version: int | None = None) -> list[VersionCheck]:
    """Every kept version of every published model (or of `model`, or just `version` of it)."""
    models = [model] if model else layout.published_models(repo)
    checks = []
    for name in models:
        available = layout.versions(repo / layout.engine_model_name(name))
        if not available:
            raise PublishError(f"model {name!r} has no published version in {repo}", where="verify",
                               fix="check the name (trtpipe models) and --repo")
        if version is not None and version not in available:
            raise PublishError(f"{name} has no version {version}", where="verify", fix=f"choose one of {available}")
        for v in [version] if version is not None else available:
            checks.append(check_version(repo, name, v))
    return checks
