"""`trtpipe cache gc --keep N` retires old versions, then frees the artifacts only they were built from."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.test_cli import trtpipe
from trtpipe.build import build
from trtpipe.cache import ArtifactCache
from trtpipe.config import load_config
from trtpipe.repo import layout


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_gc_with_keep_retires_old_versions_and_removes_the_artifacts_only_they_used(home, capsys):
    repo = home / "model_repository"
    for batch in (8, 16, 32):
        build(load_config("tiny-llama", [f"engine.max_batch_size={batch}"]), repo, keep=10)
    compile_keys = {a.key for a in ArtifactCache().entries() if a.stage == "compile"}
    assert len(compile_keys) == 3

    code, out = trtpipe(capsys, "cache", "gc", "--keep", "1")
    assert code == 0
    assert "tiny-llama: retired version(s) 1, 2" in out
    assert "removed 2 artifact(s) (" in out
    assert layout.versions(repo / "tiny-llama-engine") == [3]
    live_key = build(load_config("tiny-llama", ["engine.max_batch_size=32"]), repo).engine.key
    assert {a.key for a in ArtifactCache().entries() if a.stage == "compile"} == {live_key}
