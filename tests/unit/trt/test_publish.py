"""Publishing a trt-engine build into a model repository: every file and config.pbtxt trtpipe would write.

The engine directory is a fake trtllm-build output (config.json + rank0.engine) and the upstream
preprocessing/postprocessing model.py files are stand-ins in tmp_path (the real ones come from the image's
/app/all_models/inflight_batcher_llm, found through TRTPIPE_TRTLLM_MODELS). These tests check what
publish writes for Triton's tensorrtllm and Python backends; they load nothing into Triton.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from trtpipe.config import load_config
from trtpipe.errors import DiskError, PublishError
from trtpipe.manifest import Manifest, StageRecord
from trtpipe.repo import layout
from trtpipe.repo.tensorrtllm_configs import DRAFT_PARAMETER, parse_pbtxt
from trtpipe.repo.versions import publish_version, rollback
from trtpipe.spec import ServingSpec

from .fakes import write_engine_dir

TOKENIZER = {"tokenizer.json": '{"model": {}}', "tokenizer_config.json": "{}", "generation_config.json": "{}"}
PRE_PY, POST_PY = "# stand-in for the image's preprocessing/1/model.py\n", "# stand-in postprocessing\n"


@pytest.fixture
def upstream(tmp_path, monkeypatch) -> Path:
    models = tmp_path / "all_models" / "inflight_batcher_llm"
    for kind, text in (("preprocessing", PRE_PY), ("postprocessing", POST_PY)):
        (models / kind / "1").mkdir(parents=True)
        (models / kind / "1" / "model.py").write_text(text)
    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(models))
    return models


def _sources(root: Path, **engine_kw) -> tuple[Path, Path]:
    engine = write_engine_dir(root / "engine", **engine_kw)
    ckpt = root / "ckpt"
    ckpt.mkdir(parents=True)
    for name, text in TOKENIZER.items():
        (ckpt / name).write_text(text)
    (ckpt / "model.safetensors").write_bytes(b"weights are not published")
    return engine, ckpt


def _publish(repo: Path, name: str, key: str, sources: tuple[Path, Path]):
    config = load_config(name)
    manifest = Manifest(model_name=name, backend="trt-engine", config=config.model_dump(mode="json"),
                        stages=[StageRecord("compile", key, False, 1.0, {})])
    return publish_version(repo, ServingSpec.from_config(config), manifest, *sources)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) + ("/" if p.is_dir() else "") for p in root.rglob("*")
            if not p.name.startswith(".trtpipe-publish.lock")}


def _params(cfg) -> dict[str, str]:
    return {k: v.string_value for k, v in cfg.parameters.items()}


def _set_files(model: str, version: int) -> set[str]:
    v = str(version)
    tok = {f"tokenizer/{n}" for n in TOKENIZER} | {"tokenizer/"}
    return ({f"{model}-engine/", f"{model}-engine/config.pbtxt", f"{model}-engine/.trtpipe-history.json",
             f"{model}-engine/{v}/",
             f"{model}-engine/{v}/engine/", f"{model}-engine/{v}/engine/config.json",
             f"{model}-engine/{v}/engine/rank0.engine", f"{model}-engine/{v}/spec.json",
             f"{model}-engine/{v}/manifest.json"}
            | {f"{model}-engine/{v}/{t}" for t in tok}
            | {f"{model}-{kind}/{x}" for kind in ("preprocessing", "postprocessing")
               for x in ["", "config.pbtxt", f"{v}/", f"{v}/model.py"] + [f"{v}/{t}" for t in tok]}
            | {f"{model}-ensemble/", f"{model}-ensemble/config.pbtxt", f"{model}-ensemble/{v}/"})


def test_publishing_draft_then_target_writes_both_model_sets_with_every_file_and_config(tmp_path, upstream):
    repo = (tmp_path / "repo").resolve()
    draft = _publish(repo, "llama-3.2-1b-draft", "kd", _sources(tmp_path / "d"))
    target = _publish(repo, "llama-8b", "kt", _sources(tmp_path / "t"))
    assert (draft.version, target.version) == (1, 1)
    assert _tree(repo) == _set_files("llama-3.2-1b-draft", 1) | _set_files("llama-8b", 1)

    configs = {p.parent.name: parse_pbtxt(p.read_text()) for p in repo.glob("*/config.pbtxt")}
    assert sorted(configs) == sorted(f"{m}-{k}" for m in ("llama-8b", "llama-3.2-1b-draft")
                                     for k in ("engine", "preprocessing", "postprocessing", "ensemble"))
    for name, cfg in configs.items():
        assert cfg.name == name and list(cfg.version_policy.specific.versions) == [1], name
        # Every path a config names is absolute and exists in the published version.
        for key in ("gpt_model_path", "tokenizer_dir"):
            value = _params(cfg).get(key)
            if value:
                assert Path(value).is_absolute() and Path(value).is_dir(), (name, key, value)

    engine = configs["llama-8b-engine"]
    assert engine.backend == "tensorrtllm" and engine.model_transaction_policy.decoupled
    assert _params(engine)["gpt_model_path"] == str(repo / "llama-8b-engine" / "1" / "engine")
    assert _params(engine)[DRAFT_PARAMETER] == "llama-3.2-1b-draft-engine"
    assert DRAFT_PARAMETER not in _params(configs["llama-3.2-1b-draft-engine"])
    for kind, text in (("preprocessing", PRE_PY), ("postprocessing", POST_PY)):
        cfg = configs[f"llama-8b-{kind}"]
        assert cfg.backend == "python"
        assert _params(cfg)["tokenizer_dir"] == str(repo / f"llama-8b-{kind}" / "1" / "tokenizer")
        assert (repo / f"llama-8b-{kind}" / "1" / "model.py").read_text() == text
        for name, content in TOKENIZER.items():
            assert (repo / f"llama-8b-{kind}" / "1" / "tokenizer" / name).read_text() == content
    ensemble = configs["llama-8b-ensemble"]
    assert ensemble.platform == "ensemble"
    assert {s.model_name for s in ensemble.ensemble_scheduling.step} == {
        "llama-8b-preprocessing", "llama-8b-engine", "llama-8b-postprocessing"}
    # The frontend's view is unchanged: the engine's live version, its spec and manifest.
    assert layout.published_models(repo) == ["llama-3.2-1b-draft", "llama-8b"]
    spec = ServingSpec.read(repo / "llama-8b-engine" / "1" / "spec.json")
    assert spec.draft_model_name == "llama-3.2-1b-draft" and spec.backend == "trt-engine"
    assert Manifest.read(repo / "llama-8b-engine" / "1" / "manifest.json").version == 1


def test_a_target_whose_draft_is_not_published_is_refused_before_anything_is_written(tmp_path, upstream):
    repo = tmp_path / "repo"
    with pytest.raises(PublishError, match=r"(?s)speculates with llama-3.2-1b-draft.*trtpipe build"):
        _publish(repo, "llama-8b", "kt", _sources(tmp_path / "t"))
    assert not any(p.name.startswith("llama-8b") for p in repo.iterdir())


def test_without_the_upstream_python_models_publish_names_the_image_and_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("TRTPIPE_TRTLLM_MODELS", str(tmp_path / "nowhere"))
    repo = tmp_path / "repo"
    with pytest.raises(PublishError, match=r"(?s)preprocessing/1/model.py.*TRTPIPE_TRTLLM_MODELS"):
        _publish(repo, "llama-70b", "k1", _sources(tmp_path / "s", tp=4))
    assert not any(p.is_dir() for p in repo.iterdir())


def test_a_failed_publish_leaves_the_whole_live_set_untouched(tmp_path, upstream, monkeypatch):
    repo = tmp_path / "repo"
    _publish(repo, "llama-70b", "k1", _sources(tmp_path / "a", tp=4))
    before = {p: p.read_text() for p in repo.glob("*/config.pbtxt")}
    tree = _tree(repo)
    real_copytree = shutil.copytree
    calls = []

    def copytree_fails_the_second_time(src, dst, *a, **kw):
        calls.append(dst)
        if len(calls) == 2:  # preprocessing's tokenizer is copied, postprocessing's fails
            raise OSError(28, "No space left on device")
        return real_copytree(src, dst, *a, **kw)

    monkeypatch.setattr("trtpipe.repo.model_set.shutil.copytree", copytree_fails_the_second_time)
    with pytest.raises(DiskError, match="live version is untouched"):
        _publish(repo, "llama-70b", "k2", _sources(tmp_path / "b", tp=4))
    assert {p: p.read_text() for p in repo.glob("*/config.pbtxt")} == before
    assert _tree(repo) == tree  # no version 2 anywhere, no .staging-* left behind


def test_each_publish_moves_the_whole_set_and_rollback_moves_it_back(tmp_path, upstream):
    repo = tmp_path / "repo"
    for i in range(4):
        _publish(repo, "llama-70b", f"k{i}", _sources(tmp_path / str(i), tp=4))
    names = [f"llama-70b-{k}" for k in ("engine", "preprocessing", "postprocessing", "ensemble")]

    def live() -> dict[str, int]:
        return {n: list(parse_pbtxt((repo / n / "config.pbtxt").read_text()).version_policy.specific.versions)[0]
                for n in names}

    assert live() == dict.fromkeys(names, 4)
    # keep=3 prunes version 1 of every model of the set, so every kept version is a whole set.
    assert {n: layout.versions(repo / n) for n in names} == dict.fromkeys(names, [2, 3, 4])
    assert rollback(repo, "llama-70b") == 3
    assert live() == dict.fromkeys(names, 3)
    assert parse_pbtxt((repo / "llama-70b-engine" / "config.pbtxt").read_text()).parameters[
        "gpt_model_path"].string_value == str(repo.resolve() / "llama-70b-engine" / "3" / "engine")


def test_republishing_the_same_engine_changes_nothing(tmp_path, upstream):
    repo = tmp_path / "repo"
    _publish(repo, "llama-70b", "k1", _sources(tmp_path / "a", tp=4))
    tree = _tree(repo)
    again = _publish(repo, "llama-70b", "k1", _sources(tmp_path / "b", tp=4))
    assert again.unchanged and again.version == 1 and _tree(repo) == tree


def test_serve_on_a_trt_repository_without_a_gpu_refuses_before_starting_triton(tmp_path, upstream):
    """What `trtpipe serve` does with TensorRT-LLM engines on this machine: the preflight compares the
    machine with the build and refuses with what to do; no tritonserver is started. TensorRT-LLM is not run."""
    from trtpipe.errors import TrtpipeError
    from trtpipe.serve.process.server import ServeOptions, serve

    repo = tmp_path / "repo"
    _publish(repo, "llama-70b", "k70", _sources(tmp_path / "s70", tp=4))
    with pytest.raises(TrtpipeError, match=r"(?s)llama-70b needs 4 GPU\(s\).*this machine has 0.*Fix: run on a node with 4 GPUs"):
        serve(ServeOptions(repo=repo))
