"""`trtpipe build CONFIG --dry-run`: every command and file a build would run or write, running nothing.

The description walks build()'s own objects: the backend's preflight, then for a speculating config the
draft's chain, then the backend's stages. Each stage's key is the key the build computes (build.stage_key)
and its lines are the `describe()` of the very steps the build would run (stages/steps.py), made by the
same recipe for the same output directory. A key that needs the network (a branch or tag to resolve on the
hub) is reported as resolved at build time instead: the description never touches the network, and it
only reads the cache and the repository (to say what is cached and which version a publish would take).

Artifacts are built in a temporary directory whose name holds the builder's pid and a clock reading
(cache.py), shown as `.tmp-<key16>-<pid>-<ns>`; that part of an argv is the one thing not known ahead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from trtpipe.backend_registry import get_backend
from trtpipe.build import _is_passthrough, stage_key
from trtpipe.cache import Artifact, ArtifactCache
from trtpipe.config import BuildConfig, load_draft
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.spec import ServingSpec

UNKNOWN = "<resolved at build time>"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@contextmanager
def _offline() -> Iterator[None]:
    """Any connection attempt inside fails: the key functions must not reach the network from here."""
    def refuse(*args, **kwargs):
        raise OSError("trtpipe --dry-run does not use the network")

    saved = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo
    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = refuse, refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = saved


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, text: str = "", indent: int = 0) -> None:
        for line in (text.splitlines() or [""]):
            self.lines.append(" " * indent + line if line else "")


def describe_build(config: BuildConfig, repo: Path) -> str:
    cache = ArtifactCache()
    backend = get_backend(config.backend)
    out = _Writer()
    out(f"trtpipe build {config.name} --dry-run: what the build would run and write, in order.")
    out("Nothing was run, downloaded or written; the cache and the repository were only read.")
    out(f"cache       {cache.root}", 2)
    out(f"repository  {repo}", 2)
    out(f"cwd         {os.getcwd()}  (every command runs here, with this environment plus what a step adds;", 2)
    out("            secrets such as HF_TOKEN are passed through, never printed)", 2)
    _describe_preflight(out, config, cache)
    draft = load_draft(config)
    extra: dict[str, Artifact] = {}
    draft_fetch = None
    if draft is not None and backend.draft_is_a_model:
        out()
        out(f"== {draft.name}: the draft of {config.name}, built and published first, as its own model ==")
        draft_fetch = _describe_chain(out, draft, cache, repo)
    elif draft is not None:
        out()
        out(f"== {draft.name}: the {config.speculation.method} draft of {config.name}, fetched only (the engine "
            "speculates; it is part of the target's engine directory, not its own model) ==")
        draft_fetch = extra["draft"] = _describe_chain(out, draft, cache, repo, until="fetch")
    out()
    out(f"== {config.name} ==")
    _describe_chain(out, config, cache, repo, inputs=extra,
                    draft_fetch=draft_fetch if config.speculation and config.speculation.method == "draft-target"
                    else None)
    launch = backend.describe_launch(config, repo)
    if launch:
        out()
        for line in launch:
            out(line)
    return "\n".join(out.lines) + "\n"


def _describe_preflight(out: _Writer, config: BuildConfig, cache: ArtifactCache) -> None:
    from trtpipe.preflight import required_free_bytes

    out()
    out("preflight (before any work)")
    out(f"disk: at least {required_free_bytes(config) / (1 << 30):.1f} GiB free under {cache.root}", 2)
    for line in get_backend(config.backend).describe_preflight(config):
        out(line, 2)


def _stage_status(cache: ArtifactCache, stage: str, key: str | None) -> str:
    if key is None:
        return "key " + UNKNOWN
    done = (cache.entry_dir(stage, key) / "artifact.json").is_file()
    return f"key {key}  [{'cached: would be skipped' if done else 'would run'}]"


def _key(stage, config: BuildConfig, artifacts: dict[str, Artifact]) -> str | None:
    if any(a.key == UNKNOWN for a in artifacts.values()):
        return None
    src = config.source
    if stage.name == "fetch" and src.hf and not _COMMIT.match(src.revision or ""):
        return None  # a branch or tag: only the hub knows its commit
    with _offline():
        return stage_key(stage, config, artifacts)


def _describe_chain(out: _Writer, config: BuildConfig, cache: ArtifactCache, repo: Path, *,
                    inputs: dict[str, Artifact] | None = None, draft_fetch: Artifact | None = None,
                    until: str | None = None) -> Artifact:
    backend = get_backend(config.backend)
    artifacts: dict[str, Artifact] = dict(inputs or {})
    previous: Artifact | None = None
    for number, stage in enumerate(backend.stages, start=1):
        out()
        reason = stage.passthrough(config)
        if _is_passthrough(stage, config):
            artifacts[stage.name] = previous
            out(f"{number}. {stage.name}  pass-through ({reason}): the next stage reads {previous.path}")
            continue
        key = _key(stage, config, artifacts)
        path = cache.entry_dir(stage.name, key) if key else cache.root / stage.name / UNKNOWN
        out(f"{number}. {stage.name}  {_stage_status(cache, stage.name, key)}")
        tmp = cache.root / stage.name / f".tmp-{(key or '<key>')[:16]}-<pid>-<ns>"
        for step in stage.plan(config, artifacts, tmp):
            for line in step.describe():
                out(line, 3)
        out(f"writes {tmp}/ (+ artifact.json), renamed to {path}/", 3)
        artifacts[stage.name] = previous = Artifact(stage.name, key or UNKNOWN, path)
        if stage.name == until:
            return artifacts["fetch"]
    if draft_fetch is not None:
        out()
        out(f"check: the tokenizer.json of {config.name} ({artifacts['fetch'].path}) must have the vocabulary, merges "
            f"and special tokens of {config.speculation.draft}'s ({draft_fetch.path}): draft tokens are verified as "
            "target token ids")
    out()
    _describe_publish(out, config, repo, artifacts[backend.engine_stage].key, number + 1)
    return artifacts["fetch"]


def _compact(cfg) -> str:
    """A config as text_format prints it, with the tensor lists summarized (they are the fixed interface
    tables of repo/tensorrtllm_tensors.py or repo/model_config.py)."""
    import textwrap

    from trtpipe.repo.model_config import to_pbtxt

    brief = type(cfg)()
    brief.CopyFrom(cfg)
    del brief.input[:]
    del brief.output[:]
    lines = []
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        lines += textwrap.wrap(f"{kind} ({len(tensors)}): " + " ".join(t.name for t in tensors), 100,
                               initial_indent="# ", subsequent_indent="#   ")
    return "\n".join(lines) + "\n" + to_pbtxt(brief)


def _describe_publish(out: _Writer, config: BuildConfig, repo: Path, engine_key: str, number: int) -> None:
    from trtpipe.repo.versions import TOKENIZER_FILES

    backend = get_backend(config.backend)
    spec = backend.serving_spec(config)
    model_dir = repo / layout.engine_model_name(config.name)
    live = layout.live_version(model_dir)
    if live is not None and engine_key != UNKNOWN:
        manifest, live_spec = model_dir / str(live) / "manifest.json", model_dir / str(live) / "spec.json"
        if manifest.is_file() and Manifest.read(manifest).engine_key == engine_key and live_spec.is_file() \
                and ServingSpec.read(live_spec) == spec:
            out(f"{number}. publish  unchanged: live version {live} of {model_dir.name} has this engine key; "
                "nothing written")
            return
    version = max(layout.versions(model_dir), default=0) + 1
    out(f"{number}. publish  {config.name} as version {version} into {repo}"
        + (f" (live now: {live})" if live is not None else " (first version)"))
    files = [*backend.describe_engine_files(),
             f"engine/ (the {backend.engine_stage} artifact's files, hard-linked)",
             "tokenizer/ (" + ", ".join(TOKENIZER_FILES) + ", those the checkpoint has)",
             "spec.json (the limits engine, Triton and frontend read)",
             "manifest.json (with the sha256 of every file above; engine/ and tokenizer/ checked against the cache "
             "entries' records first)"]
    if spec.draft_model_name:
        out(f"requires {layout.engine_model_name(spec.draft_model_name)} live in {repo} (published above)", 3)
    if spec.engine_speculation:
        out(f"spec.json: engine_speculation {spec.engine_speculation}, no draft model: the frontend runs no "
            "draft-target loop of its own for this model", 3)
    if spec.guided_decoding:
        out(f"spec.json: guided_decoding {spec.guided_decoding}: the frontend sends response_format, forced tool calls "
            "and guided_* as guided_decoding_guide_type / guided_decoding_guide, and the engine enforces them", 3)
    else:
        out("spec.json: guided_decoding off (serving.guided_decoding: none): the frontend answers response_format, "
            "forced tool calls and guided_* with a 400", 3)
    staged = [(model_dir, files)] + [(d.model_dir, d.files) for d in backend.describe_companions(repo, spec, version)]
    for directory, names in staged:
        out(f"writes {directory}/.staging-{version}/, renamed to {directory}/{version}/: " + "; ".join(names), 3)
    out("spec.json: " + json.dumps(dataclasses.asdict(spec), sort_keys=True), 3)
    configs = backend.model_configs(repo, spec, version)
    out("then replaces, in this order, each atomically (the last one makes the version live):", 3)
    for name, cfg in configs.items():
        out(f"--- {repo / name / 'config.pbtxt'}", 3)
        out(_compact(cfg), 5)
    out(f"then asks a running `trtpipe serve` (if any) to reload {', '.join(configs)}, and keeps the 3 newest "
        "versions of each", 3)
