"""Publishing a trt-engine build: the whole model set as one new version, beside the live one.

repo/versions.py stages `<model>-engine/N` (engine/, tokenizer/, spec.json, manifest.json) as for the
reference backend; this module adds the other models of the set and writes their configs:

    <model>-preprocessing/N/{model.py, tokenizer/}    the image's upstream model.py, copied
    <model>-postprocessing/N/{model.py, tokenizer/}   same
    <model>-ensemble/N/                                empty: Triton needs the version directory
    <model>-{engine,preprocessing,postprocessing,ensemble}/config.pbtxt   all pinned to N

The upstream model.py files are copied into each version, not referenced in place: Triton's Python
backend loads `<model>/<version>/model.py` from the version directory, and a copy pins the exact file a
version was published with, so rebuilding the image cannot change a live version (or a rollback target)
behind its back. They come from `TrtTools().models_dir` (the image's /app/all_models/inflight_batcher_llm;
TRTPIPE_TRTLLM_MODELS elsewhere). Upstream deletes these templates after TensorRT-LLM 1.3.0rc20, so
the pinned image is their source of truth (reference/trtllm-facts.md §0).

Each version is staged as `.staging-N` (invisible to Triton, which only loads integer directories) and
renamed when complete; the configs, which decide what is live, are written last by repo/versions.py and the
engine's last of all. A failure before that leaves the live set serving.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from trtpipe.errors import PublishError
from trtpipe.repo import layout
from trtpipe.repo.tensorrtllm_configs import RepoNames
from trtpipe.spec import ServingSpec
from trtpipe.trt.recipes import TrtTools

PYTHON_MODELS = ("preprocessing", "postprocessing")


def companion_names(spec: ServingSpec) -> list[str]:
    """The models published next to `<model>-engine`, in the order they are written."""
    names = RepoNames(spec.model_name)
    return [names.preprocessing, names.postprocessing, names.ensemble]


def upstream_sources(tools: TrtTools | None = None) -> dict[str, Path]:
    tools = tools or TrtTools()
    return {kind: Path(tools.upstream_model_py(kind)) for kind in PYTHON_MODELS}


def check_can_publish(repo: Path, spec: ServingSpec, tools: TrtTools | None = None) -> None:
    """Refuse before anything is written: the upstream model.py files must exist, and a speculating
    target's draft must already be live in the same repository (build() publishes it first)."""
    missing = [str(p) for p in upstream_sources(tools).values() if not p.is_file()]
    if missing:
        raise PublishError(f"the TensorRT-LLM Python models are missing: {', '.join(missing)}", where="publish",
                           fix="publish inside the TensorRT-LLM image (they are under "
                               "/app/all_models/inflight_batcher_llm), or set TRTPIPE_TRTLLM_MODELS to a copy "
                               "of triton_backend/all_models/inflight_batcher_llm from the pinned TensorRT-LLM "
                               "(trtpipe/trt/toolchain.py)")
    if spec.draft_model_name:
        draft_dir = repo / RepoNames(spec.draft_model_name).engine
        live = layout.live_version(draft_dir)
        if live is None:
            raise PublishError(f"{spec.model_name} speculates with {spec.draft_model_name}, which is not published "
                               f"in {repo}", where="publish",
                               fix=f"build the draft into the same repository first (trtpipe build "
                                   f"{spec.draft_model_name} --repo {repo}); `trtpipe build {spec.model_name}` does it")
        draft = ServingSpec.read(draft_dir / str(live) / "spec.json")
        if draft.backend != spec.backend:
            raise PublishError(f"the draft {spec.draft_model_name} is a {draft.backend} model; the target is "
                               f"{spec.backend}", where="publish", fix="build the draft with backend: trt-engine")
        if draft.max_seq_len < spec.max_seq_len:
            raise PublishError(f"the draft's max_seq_len {draft.max_seq_len} is below the target's "
                               f"{spec.max_seq_len}: it could not propose for long sequences", where="publish",
                               fix=f"raise engine.max_seq_len of {spec.draft_model_name} to {spec.max_seq_len}")


def stage_companions(repo: Path, spec: ServingSpec, version: int, tokenizer_dir: Path,
                     tools: TrtTools | None = None) -> list[Path]:
    """Write version `version` of each companion model and rename it into place; returns the version
    directories. Not live until write_model_set_configs(); on failure nothing of this call remains."""
    sources = upstream_sources(tools)
    names = RepoNames(spec.model_name)
    written: list[Path] = []
    staged: list[Path] = []
    try:
        for name in companion_names(spec):
            model_dir = repo / name
            model_dir.mkdir(parents=True, exist_ok=True)
            for abandoned in model_dir.glob(".staging-*"):  # left by a publish that was killed
                shutil.rmtree(abandoned, ignore_errors=True)
            final = model_dir / str(version)
            if final.exists():
                if layout.live_version(model_dir) == version:
                    raise PublishError(f"{name} version {version} is live but {names.engine} has no version "
                                       f"{version}", where=str(repo), fix=f"remove {model_dir} and publish again")
                shutil.rmtree(final)  # a leftover of a publish killed between its renames
            staging = model_dir / f".staging-{version}"
            staging.mkdir()
            staged.append(staging)
            kind = name[len(spec.model_name) + 1:]
            if kind in sources:
                shutil.copy2(sources[kind], staging / "model.py")
                shutil.copytree(tokenizer_dir, staging / "tokenizer")
        for staging in staged:
            final = staging.parent / str(version)
            staging.rename(final)
            written.append(final)
    except BaseException:
        for path in staged + written:
            shutil.rmtree(path, ignore_errors=True)
        raise
    return written
