"""Rollback returns to the version that was live before, and retention keeps the versions rollback can reach."""

import pytest

from tests.unit.repo.test_versions import SPEC, manifest
from trtpipe.errors import ConfigError, PublishError
from trtpipe.repo import layout
from trtpipe.repo.history import live_stack, read_events
from trtpipe.repo.versions import publish_version, retire, rollback

MODEL_DIR = "tiny-llama-engine"


@pytest.fixture
def sources(tmp_path):
    engine, ckpt = tmp_path / "engine", tmp_path / "ckpt"
    engine.mkdir()
    ckpt.mkdir()
    (engine / "weights.safetensors").write_bytes(b"w")
    (ckpt / "tokenizer.json").write_text("{}")
    return engine, ckpt


def publish(repo, sources, key, keep=3):
    return publish_version(repo, SPEC, manifest(key), *sources, keep=keep).version


def test_rollback_after_publish_publish_rollback_returns_to_the_version_live_before_not_the_highest_lower(
        tmp_path, sources):
    repo = tmp_path / "repo"
    assert publish(repo, sources, "k1") == 1
    assert publish(repo, sources, "k2") == 2
    assert rollback(repo, "tiny-llama") == 1
    assert publish(repo, sources, "k3") == 3
    assert rollback(repo, "tiny-llama") == 1  # 2 was retired by the first rollback; 1 was live before 3
    assert layout.live_version(repo / MODEL_DIR) == 1
    assert [(e["action"], e["version"], e["previous"]) for e in read_events(repo / MODEL_DIR)] == \
        [("publish", 1, None), ("publish", 2, 1), ("rollback", 1, 2), ("publish", 3, 1), ("rollback", 1, 3)]


def test_rollback_to_a_named_version_is_itself_undone_by_the_next_rollback(tmp_path, sources):
    repo = tmp_path / "repo"
    for key in ("k1", "k2", "k3"):
        publish(repo, sources, key)
    assert rollback(repo, "tiny-llama", to_version=1) == 1
    assert rollback(repo, "tiny-llama") == 3
    assert live_stack(read_events(repo / MODEL_DIR)) == [1, 2, 3]


def test_rollback_with_nothing_live_before_names_the_kept_versions(tmp_path, sources):
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    with pytest.raises(PublishError, match=r"(?s)no kept version that was live before version 1.*--to \(kept "
                                           r"versions: \[1\]\)"):
        rollback(repo, "tiny-llama")


def test_a_repository_without_history_rolls_back_to_the_newest_lower_version(tmp_path, sources):
    repo = tmp_path / "repo"
    for key in ("k1", "k2", "k3"):
        publish(repo, sources, key)
    (repo / MODEL_DIR / ".trtpipe-history.json").unlink()
    assert rollback(repo, "tiny-llama") == 2


def test_keep_retains_the_live_version_and_those_live_just_before_it_not_merely_the_newest(tmp_path, sources):
    repo = tmp_path / "repo"
    for key in ("k1", "k2", "k3"):
        publish(repo, sources, key, keep=10)
    rollback(repo, "tiny-llama", to_version=1)  # live: 1, before it 3, before that 2
    assert publish(repo, sources, "k4", keep=2) == 4
    assert layout.versions(repo / MODEL_DIR) == [1, 4]
    assert rollback(repo, "tiny-llama") == 1


def test_retire_applies_keep_to_every_published_model_and_refuses_keep_zero(tmp_path, sources):
    repo = tmp_path / "repo"
    for key in ("k1", "k2", "k3", "k4"):
        publish(repo, sources, key, keep=10)
    assert retire(repo, keep=2) == {"tiny-llama": [1, 2]}
    assert layout.versions(repo / MODEL_DIR) == [3, 4]
    assert retire(repo, keep=2) == {}
    with pytest.raises(ConfigError, match="would retire the live version"):
        retire(repo, keep=0)


def test_an_engine_identical_to_a_rolled_back_version_is_not_published_again_nor_made_live(tmp_path, sources):
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    publish(repo, sources, "k2")
    rollback(repo, "tiny-llama")
    again = publish_version(repo, SPEC, manifest("k2"), *sources)
    assert (again.unchanged, again.version, again.is_live) == (True, 2, False)
    assert layout.versions(repo / MODEL_DIR) == [1, 2]
    assert layout.live_version(repo / MODEL_DIR) == 1
