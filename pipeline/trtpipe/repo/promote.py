"""Promote: make the version that is live in one repository (a staging repository the nightly gated) live in
another (the one serving), without rebuilding and without a GPU.

`trtpipe build` cannot be the promote step on a GPU-less node: its preflight needs the toolchain, and a trt-engine
compile key includes the build machine's GPU (backends/tensorrt_engine.py machine_fingerprint), so a build there
would miss the cache. The published version already holds everything a version is: engine/, tokenizer/,
spec.json and manifest.json; this publishes exactly those through publish_version (staged, renamed, the live one
untouched on failure; a no-op when the target's live engine key is already that one). A speculating target's
draft, its own model set, is promoted first.

    python3 -m trtpipe.repo.promote MODEL --from STAGING_REPO --repo LIVE_REPO     (the nightly CronJob)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trtpipe.errors import PublishError, TrtpipeError
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.repo.versions import PublishedVersion, publish_version
from trtpipe.spec import ServingSpec


def promote(model: str, source_repo: Path, target_repo: Path) -> list[PublishedVersion]:
    """Publish `model`'s live version in source_repo into target_repo (its draft first); returns what happened,
    draft first."""
    model_dir = Path(source_repo) / layout.engine_model_name(model)
    live = layout.live_version(model_dir)
    if live is None:
        raise PublishError(f"{model} has no live version in {source_repo}", where="promote",
                           fix=f"build and publish it there first: trtpipe build {model} --repo {source_repo}")
    version = model_dir / str(live)
    spec = ServingSpec.read(version / "spec.json")
    done = promote(spec.draft_model_name, source_repo, target_repo) if spec.draft_model_name else []
    manifest = Manifest.read(version / "manifest.json")
    return done + [publish_version(Path(target_repo), spec, manifest, version / "engine", version / "tokenizer")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m trtpipe.repo.promote", description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--from", dest="source", required=True, type=Path, help="the repository it is live in")
    parser.add_argument("--repo", required=True, type=Path, help="the repository to make it live in")
    args = parser.parse_args(argv)
    try:
        for p in promote(args.model, args.source, args.repo):
            state = "already live" if p.unchanged else "now live"
            print(f"promote: {p.model} version {p.version} {state} in {args.repo}")
    except TrtpipeError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
