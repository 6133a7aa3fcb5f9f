"""`trtpipe build CONFIG --dry-run`: every command and file a build would run or write, running nothing.

The description follows build() step by step: preflight, then for a speculating config the draft's whole
chain and publish, then the config's own stages (fetch, convert, quantize, compile with the engine-dir
check) and its publish. Commands are the argv the stages would hand to subprocess, made by the same
recipe functions, shell-quoted; cache keys are the stages' own key functions, so a key printed here is
the key the build will use. A key that needs the network (a branch or tag to resolve on the hub) is
reported as resolved at build time instead: the description never touches the network, and it only
reads the cache and the repository (to say what is cached and which version a publish would take).

Artifacts are built in a temporary directory whose name holds the builder's pid and a clock reading
(cache.py), shown as `.tmp-<key16>-<pid>-<ns>`; that part of an argv is the one thing not known ahead.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from trtpipe.cache import Artifact, ArtifactCache, cache_key
from trtpipe.config import BuildConfig, load_config
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.spec import ServingSpec
from trtpipe.stages import STAGES

UNKNOWN = "<resolved at build time>"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_PORTS = (8000, 8001, 8002)


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
    out = _Writer()
    out(f"trtpipe build {config.name} --dry-run: what the build would run and write, in order.")
    out("Nothing was run, downloaded or written; the cache and the repository were only read.")
    out(f"cache       {cache.root}", 2)
    out(f"repository  {repo}", 2)
    out(f"cwd         {os.getcwd()}  (every command runs here, with this environment plus what a step adds;", 2)
    out("            secrets such as HF_TOKEN are passed through, never printed)", 2)
    _describe_preflight(out, config, cache)
    draft_fetch = None
    if config.speculation:
        draft = load_config(config.speculation.draft)
        out()
        out(f"== {draft.name}: the draft of {config.name}, built and published first, as its own model ==")
        draft_fetch = _describe_chain(out, draft, cache, repo)
    out()
    out(f"== {config.name} ==")
    _describe_chain(out, config, cache, repo, draft_fetch=draft_fetch)
    if config.backend == "trt-engine":
        _describe_launch(out, config, repo)
    return "\n".join(out.lines) + "\n"


def _describe_preflight(out: _Writer, config: BuildConfig, cache: ArtifactCache) -> None:
    from trtpipe.preflight import required_free_bytes

    out()
    out("preflight (before any work)")
    out(f"disk: at least {required_free_bytes(config) / (1 << 30):.1f} GiB free under {cache.root}", 2)
    if config.backend != "trt-engine":
        return
    from trtpipe.trt.recipes import IMAGE, TOOLCHAIN, TrtTools, uses_modelopt

    tools = TrtTools()
    need = ["nvidia-smi lists a GPU", f"tensorrt_llm {TOOLCHAIN['tensorrt_llm']} importable", tools.trtllm_build,
            tools.convert_script, tools.quantize_script]
    if uses_modelopt(config):
        need.append(f"nvidia-modelopt {TOOLCHAIN['modelopt']}")
    out("toolchain: " + "; ".join(need), 2)
    out(f"otherwise the build stops here and names {IMAGE}", 2)


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
        inputs = stage.key_inputs(config, artifacts)
    return cache_key({"stage": stage.name, "version": stage.version, **inputs})


def _tmp_dir(cache: ArtifactCache, stage: str, key: str | None) -> Path:
    return cache.root / stage / f".tmp-{(key or '<key>')[:16]}-<pid>-<ns>"


def _describe_chain(out: _Writer, config: BuildConfig, cache: ArtifactCache, repo: Path,
                    draft_fetch: Artifact | None = None) -> Artifact:
    from trtpipe.build import _is_passthrough

    artifacts: dict[str, Artifact] = {}
    previous: Artifact | None = None
    for number, stage in enumerate(STAGES, start=1):
        out()
        if _is_passthrough(stage, config):
            artifacts[stage.name] = previous
            why = "quantized by convert" if config.backend == "trt-engine" and config.quantization else "no quantization"
            out(f"{number}. {stage.name}  pass-through ({why}): the next stage reads {previous.path}")
            continue
        key = _key(stage, config, artifacts)
        path = cache.entry_dir(stage.name, key) if key else cache.root / stage.name / UNKNOWN
        out(f"{number}. {stage.name}  {_stage_status(cache, stage.name, key)}")
        tmp = _tmp_dir(cache, stage.name, key)
        _DESCRIBE_STAGE[stage.name](out, config, artifacts, tmp)
        out(f"writes {tmp}/ (+ artifact.json), renamed to {path}/", 3)
        artifacts[stage.name] = previous = Artifact(stage.name, key or UNKNOWN, path)
    if draft_fetch is not None:
        out()
        out(f"check: the tokenizer.json of {config.name} ({artifacts['fetch'].path}) must have the sha256 of "
            f"{config.speculation.draft}'s ({draft_fetch.path}): draft tokens are verified as target token ids")
    out()
    _describe_publish(out, config, repo, artifacts["compile"].key)
    return artifacts["fetch"]


def _describe_fetch(out: _Writer, config: BuildConfig, artifacts: dict[str, Artifact], tmp: Path) -> None:
    from trtpipe.stages.fetch import ALLOW_PATTERNS, PICKLE_PATTERNS

    src = config.source
    if src.synthetic:
        out(f"in-process: generate the synthetic checkpoint {src.synthetic!r} (seeded random weights, "
            "trained byte-level BPE tokenizer)", 3)
    elif src.path:
        out(f"copy the files of {Path(src.path).expanduser().resolve()} (top level)", 3)
    else:
        pinned = "a commit sha, used as is" if _COMMIT.match(src.revision) else "a branch or tag, " + UNKNOWN
        out(f"download {src.hf}@{src.revision} ({pinned}) with huggingface_hub into its cache "
            "($HF_HUB_CACHE), then link the files here and check each against the hub's sha256", 3)
        out("files: " + " ".join(ALLOW_PATTERNS + (PICKLE_PATTERNS if src.allow_pickle else [])), 3)
        out(f"token: HF_TOKEN from the environment ({'set' if os.environ.get('HF_TOKEN') else 'not set'}; "
            "never printed or stored)", 3)
    out("refuses a config.json with auto_map (custom code)" + (" unless allowed" if src.allow_custom_code else ""), 3)


def _command(out: _Writer, cmd, log: Path) -> None:
    out(cmd.description, 3)
    out(f"cwd: {cmd.cwd or os.getcwd()}", 3)
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(cmd.env.items()))
    out(f"env: {env or '(nothing added)'}", 3)
    out("$ " + shlex.join(cmd.argv), 3)
    out(f"log: {log}", 3)


def _describe_convert(out: _Writer, config: BuildConfig, artifacts: dict[str, Artifact], tmp: Path) -> None:
    if config.backend == "reference":
        out(f"in-process: trtpipe.engine.convert_checkpoint({artifacts['fetch'].path}, <tmp>, "
            f"dtype={config.dtype})", 3)
        return
    from trtpipe.trt.recipes import TrtTools, checkpoint_command

    _command(out, checkpoint_command(config, artifacts["fetch"].path, tmp, TrtTools()),
             tmp.parent / f"{tmp.name}.log")


def _describe_quantize(out: _Writer, config: BuildConfig, artifacts: dict[str, Artifact], tmp: Path) -> None:
    from trtpipe.stages.quantize import REFERENCE_MODES

    q = config.quantization
    out(f"in-process: trtpipe.engine.quantize_checkpoint({artifacts['convert'].path}, <tmp>, "
        f"{REFERENCE_MODES[q.format]!r}, group_size={q.group_size}); records the logit delta", 3)


def _describe_compile(out: _Writer, config: BuildConfig, artifacts: dict[str, Artifact], tmp: Path) -> None:
    if config.backend == "reference":
        out(f"in-process: link the files of {artifacts['quantize'].path} into <tmp>; smoke gate: load the "
            "engine and generate 4 tokens", 3)
        return
    from trtpipe.trt.engine_dir import KV_QUANT_ALGO, QUANT_ALGO, expected_limits
    from trtpipe.trt.recipes import TrtTools, build_commands

    for i, cmd in enumerate(build_commands(config, artifacts["quantize"].path, tmp, TrtTools())):
        _command(out, cmd, tmp.parent / f"{tmp.name}.{i}.log")
    limits = expected_limits(config)
    world = config.parallelism.world_size
    q = config.quantization
    ranks = " ".join(f"rank{r}.engine" for r in range(world))
    out(f"verify (trt/engine_dir.py): <tmp> holds config.json and exactly {ranks} (none empty); "
        f"mapping tp={config.parallelism.tp} pp={config.parallelism.pp}", 3)
    out("  build_config " + " ".join(f"{k}={v}" for k, v in limits.items() if k != "max_num_tokens")
        + f" max_num_tokens>={limits['max_num_tokens']}; paged KV cache; paged context FMHA on"
        + ("; speculative_decoding_mode draft_tokens_external" if limits["max_draft_len"] else ""), 3)
    out(f"  quant_algo {QUANT_ALGO.get(q.format) if q else None}, kv_cache_quant_algo "
        f"{KV_QUANT_ALGO.get(q.kv_cache_dtype) if q and q.kv_cache_dtype else None}", 3)


_DESCRIBE_STAGE = {"fetch": _describe_fetch, "convert": _describe_convert, "quantize": _describe_quantize,
                   "compile": _describe_compile}


def _compact(cfg) -> str:
    """A config as text_format prints it, with the tensor lists summarized (they are the fixed interface
    tables of trt/tensors.py or repo/model_config.py)."""
    import textwrap

    from trtpipe.trt.model_configs import to_pbtxt

    brief = type(cfg)()
    brief.CopyFrom(cfg)
    del brief.input[:]
    del brief.output[:]
    lines = []
    for kind, tensors in (("input", cfg.input), ("output", cfg.output)):
        lines += textwrap.wrap(f"{kind} ({len(tensors)}): " + " ".join(t.name for t in tensors), 100,
                               initial_indent="# ", subsequent_indent="#   ")
    return "\n".join(lines) + "\n" + to_pbtxt(brief)


def _describe_publish(out: _Writer, config: BuildConfig, repo: Path, engine_key: str) -> None:
    from trtpipe.repo.versions import TOKENIZER_FILES

    spec = ServingSpec.from_config(config)
    model_dir = repo / layout.engine_model_name(config.name)
    live = layout.live_version(model_dir)
    if live is not None and engine_key != UNKNOWN:
        manifest = model_dir / str(live) / "manifest.json"
        if manifest.is_file() and Manifest.read(manifest).engine_key == engine_key:
            out(f"5. publish  unchanged: live version {live} of {model_dir.name} has this engine key; nothing written")
            return
    version = max(layout.versions(model_dir), default=0) + 1
    out(f"5. publish  {config.name} as version {version} into {repo}"
        + (f" (live now: {live})" if live is not None else " (first version)"))
    staged = [(model_dir, ["engine/ (the compile artifact's files, hard-linked)",
                           "tokenizer/ (" + ", ".join(TOKENIZER_FILES) + ", those the checkpoint has)",
                           "spec.json (the limits engine, Triton and frontend read)", "manifest.json"])]
    if config.backend == "reference":
        from trtpipe.repo.model_config import reference_engine_config

        staged[0][1].insert(0, "model.py (the Triton adapter, model_repo/engine/1/model.py)")
        configs = {model_dir.name: reference_engine_config(spec, model_dir.name, version)}
    else:
        from trtpipe.trt.model_configs import model_set_configs
        from trtpipe.trt.publish import companion_names, upstream_sources

        if spec.draft_model_name:
            out(f"requires {spec.draft_model_name}-engine live in {repo} (published above)", 3)
        sources = upstream_sources()
        for name in companion_names(spec):
            kind = name[len(config.name) + 1:]
            here = "" if kind not in sources or sources[kind].is_file() else ", which is in the image, not here"
            files = [f"model.py (copied from {sources[kind]}{here})", "tokenizer/ (a copy of the engine's)"] \
                if kind in sources else ["(empty: the ensemble runs no code)"]
            staged.append((repo / name, files))
        configs = model_set_configs(spec, repo_dir=repo, live_version=version)
    for directory, files in staged:
        out(f"writes {directory}/.staging-{version}/, renamed to {directory}/{version}/: " + "; ".join(files), 3)
    out("then replaces, in this order, each atomically (the last one makes the version live):", 3)
    for name, cfg in configs.items():
        out(f"--- {repo / name / 'config.pbtxt'}", 3)
        out(_compact(cfg), 5)
    out(f"then asks a running `trtpipe serve` (if any) to reload {', '.join(configs)}, and keeps the 3 newest "
        "versions of each", 3)


def _describe_launch(out: _Writer, config: BuildConfig, repo: Path) -> None:
    """Not part of the build: how trt/launch.py would start Triton for this model set."""
    from dataclasses import dataclass

    from trtpipe.trt.launch import launch_mode, triton_launch_argv, triton_launch_env
    from trtpipe.trt.model_configs import RepoNames
    from trtpipe.trt.recipes import TrtTools

    @dataclass(frozen=True)
    class Ports:
        http: int = _PORTS[0]
        grpc: int = _PORTS[1]
        metrics: int = _PORTS[2]

    engines = [RepoNames(config.name).engine] + ([RepoNames(config.speculation.draft).engine]
                                                  if config.speculation else [])
    world = config.parallelism.world_size
    mode = launch_mode(world, len(engines))
    tools = TrtTools()
    argv = triton_launch_argv(repo, world, Ports(), engine_models=engines, tritonserver=tools.tritonserver,
                              mpirun=tools.mpirun, gpu_count=world if mode == "orchestrator" else None)
    env = " ".join(f"{k}={v}" for k, v in sorted(triton_launch_env(world, len(engines)).items()))
    out()
    out(f"serve (not run by build): Triton for this set, {mode} mode (trt/launch.py), default ports")
    out("$ " + (env + " " if env else "") + shlex.join(argv), 3)
