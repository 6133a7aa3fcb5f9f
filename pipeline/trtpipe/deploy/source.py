"""Which published version a deployment serves, and whether Dynamo's GPU worker can run it.

Two ways to name it: a model published in a local model repository (its live version, or --version N; the build
config comes from the version's manifest and the draft from its files), or a build config plus a version number
for a version published elsewhere, typically on the cluster's volume by the nightly CronJob
(docker/k8s/nightly-rebuild.yaml), which a laptop does not hold.
"""

from __future__ import annotations

from pathlib import Path

from trtpipe.config import BuildConfig, load_config
from trtpipe.deploy.dynamo_worker import PublishedArtifact
from trtpipe.errors import ConfigError, IntegrityError, TrtpipeError
from trtpipe.manifest import Manifest
from trtpipe.repo.layout import engine_model_name, live_version, published_models, versions
from trtpipe.trt.llm_args import CHECKPOINT_DIR, DRAFT_DIR, OPTIONS_FILE

# TRTPIPE_HOME in the pods, and the model repository under it (docker/k8s/deployment.yaml and pvc.yaml).
POD_HOME = "/var/lib/trtpipe"
POD_REPO = f"{POD_HOME}/model_repository"
GPU_BACKEND = "trtllm-pytorch"


class NotPublishedError(TrtpipeError):
    """The model (or the version asked for) is not published in the model repository."""


def check_backend(config: BuildConfig, where: str) -> None:
    """Dynamo's TensorRT-LLM worker runs LLM-API (PyTorch backend) artifacts only."""
    if config.backend == GPU_BACKEND:
        return
    if config.backend == "reference":
        raise ConfigError(f"{config.name} is built for the reference engine, which runs on CPUs only; a "
                          "DynamoGraphDeployment runs Dynamo's TensorRT-LLM worker on GPUs", where=where,
                          fix=f"serve it on one host with Dynamo's CPU workers (trtpipe serve --dynamo), or build a "
                              f"`backend: {GPU_BACKEND}` config of the model (e.g. build_configs/llama-8b-pytorch.yaml)")
    raise ConfigError(f"{config.name} is built for backend {config.backend!r} (TensorRT engines for Triton's "
                      f"tensorrtllm backend); Dynamo's TensorRT-LLM worker loads LLM-API checkpoints only", where=where,
                      fix=f"build the model with `backend: {GPU_BACKEND}` (build_configs/llama-8b-pytorch.yaml "
                          "is llama-8b's), or keep serving this one with trtpipe serve")


def from_repository(repo: Path, model: str, version: int | None, pod_repo: str = POD_REPO) -> PublishedArtifact:
    """The live version of `model` in `repo` (or `version`), read from its manifest."""
    model_dir = repo / engine_model_name(model)
    live = live_version(model_dir)
    if live is None:
        others = ", ".join(published_models(repo)) or "none"
        raise NotPublishedError(f"model {model!r} has no published version in {repo} (published: {others})",
                                where="deploy dynamo",
                                fix=f"build it first (trtpipe build {model}), point --repo at the repository that "
                                    f"holds it, or name a version built elsewhere: --config {model} --version N")
    chosen = live if version is None else version
    if chosen not in versions(model_dir):
        raise NotPublishedError(f"{model} has no version {chosen} in {repo} (versions: "
                                f"{', '.join(map(str, versions(model_dir)))}; live: {live})", where="deploy dynamo",
                                fix=f"pick one of them with --version, or leave --version out for the live one ({live})")
    version_dir = model_dir / str(chosen)
    manifest_path = version_dir / "manifest.json"
    if not manifest_path.is_file():
        raise IntegrityError(f"version {chosen} of {model} has no manifest.json", where=str(version_dir),
                             fix=f"trtpipe verify {model}; rebuild it (trtpipe build {model}) if it is damaged")
    config = BuildConfig.model_validate(Manifest.read(manifest_path).config)
    check_backend(config, where=f"{model} version {chosen}")
    engine = version_dir / "engine"
    for needed in (engine / CHECKPOINT_DIR, engine / OPTIONS_FILE):
        if not needed.exists():
            raise IntegrityError(f"version {chosen} of {model} has no {needed.relative_to(version_dir)}",
                                 where=str(version_dir),
                                 fix=f"trtpipe verify {model}; rebuild it (trtpipe build {model}) if it is damaged")
    return PublishedArtifact(config=config, version=chosen, has_draft=(engine / DRAFT_DIR).is_dir(), pod_repo=pod_repo)


def from_config(config_name: str, version: int | None, pod_repo: str = POD_REPO) -> PublishedArtifact:
    """A version built from `config_name` and published where the pods see it, not in a local repository."""
    if version is None:
        raise ConfigError("--config names a version published elsewhere, so its number must be given",
                          where="deploy dynamo --config", fix="add --version N (trtpipe models on the machine that "
                                                              "built it lists the versions)")
    config = load_config(config_name)
    check_backend(config, where=config_name)
    has_draft = config.speculation is not None and config.speculation.draft is not None
    return PublishedArtifact(config=config, version=version, has_draft=has_draft, pod_repo=pod_repo)
