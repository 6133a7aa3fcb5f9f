"""repo/promote.py: the nightly's promote step publishes the version live in the staging repository into the
serving one without building (so without a GPU or TensorRT-LLM), exactly its files, and is a no-op when that
version is already live. Checked on the reference backend's tiny-llama; nothing here runs TensorRT-LLM."""

from __future__ import annotations

import hashlib
import json

import pytest

from trtpipe.errors import PublishError
from trtpipe.repo import layout
from trtpipe.repo.promote import main, promote


def _files(version_dir):
    return {str(p.relative_to(version_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(version_dir.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and "__pycache__" not in p.parts}  # Triton's, not a build's


def test_promote_publishes_the_staging_live_version_without_building_and_again_is_a_no_op(built_repo, tmp_path,
                                                                                         monkeypatch):
    import trtpipe.build

    monkeypatch.setattr(trtpipe.build, "build", lambda *a, **k: pytest.fail("promote must not build"))
    live_repo = tmp_path / "live"
    [first] = promote("tiny-llama", built_repo, live_repo)
    assert (first.model, first.version, first.unchanged) == ("tiny-llama", 1, False)
    source = built_repo / "tiny-llama-engine" / str(layout.live_version(built_repo / "tiny-llama-engine"))
    assert _files(first.path) == _files(source)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (first.path, source)]
    assert manifests[0]["stages"] == manifests[1]["stages"]  # the same build, keys and all
    [again] = promote("tiny-llama", built_repo, live_repo)
    assert again.unchanged and again.version == 1


def test_promote_refuses_a_model_not_live_in_the_staging_repository_naming_the_build_to_run(tmp_path, capsys):
    with pytest.raises(PublishError, match="llama-8b has no live version in") as e:
        promote("llama-8b", tmp_path / "staging", tmp_path / "live")
    assert "trtpipe build llama-8b --repo" in str(e.value)
    assert main(["llama-8b", "--from", str(tmp_path / "staging"), "--repo", str(tmp_path / "live")]) == 1
    assert "Error: promote: llama-8b has no live version" in capsys.readouterr().err
