import pytest

from trtpipe.config import load_config
from trtpipe.errors import DiskError, PublishError
from trtpipe.manifest import Manifest, StageRecord
from trtpipe.repo import layout
from trtpipe.repo.model_config import parse_pbtxt
from trtpipe.repo.versions import list_versions, publish_version, rollback
from trtpipe.spec import ServingSpec


@pytest.fixture
def sources(tmp_path):
    engine, ckpt = tmp_path / "engine", tmp_path / "ckpt"
    engine.mkdir()
    ckpt.mkdir()
    (engine / "weights.safetensors").write_bytes(b"w")
    (ckpt / "tokenizer.json").write_text("{}")
    (ckpt / "tokenizer_config.json").write_text("{}")
    return engine, ckpt


def manifest(engine_key: str) -> Manifest:
    return Manifest(model_name="tiny-llama", backend="reference", config={},
                    stages=[StageRecord("compile", engine_key, False, 0.1, {})])


SPEC = ServingSpec.from_config(load_config("tiny-llama"))


def test_first_publish_writes_version_1_and_pins_it_in_config_pbtxt(tmp_path, sources):
    repo = tmp_path / "repo"
    published = publish_version(repo, SPEC, manifest("k1"), *sources)
    model_dir = repo / "tiny-llama-engine"
    assert published.version == 1
    assert sorted(p.name for p in (model_dir / "1").iterdir()) == \
        ["engine", "manifest.json", "model.py", "spec.json", "tokenizer"]
    cfg = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert list(cfg.version_policy.specific.versions) == [1]
    assert cfg.model_transaction_policy.decoupled
    assert [i.name for i in cfg.input][:3] == ["input_ids", "input_lengths", "request_output_len"]
    assert {o.name for o in cfg.output} >= {"output_ids", "sequence_length"}


def test_republishing_the_same_engine_is_a_no_op(tmp_path, sources):
    repo = tmp_path / "repo"
    publish_version(repo, SPEC, manifest("k1"), *sources)
    again = publish_version(repo, SPEC, manifest("k1"), *sources)
    assert again.unchanged and again.version == 1
    assert layout.versions(repo / "tiny-llama-engine") == [1]


def test_new_engine_becomes_the_next_version_and_old_ones_are_pruned(tmp_path, sources):
    repo = tmp_path / "repo"
    for i in range(5):
        publish_version(repo, SPEC, manifest(f"k{i}"), *sources, keep=3)
    assert layout.versions(repo / "tiny-llama-engine") == [3, 4, 5]
    assert layout.live_version(repo / "tiny-llama-engine") == 5


def test_rollback_goes_to_the_previous_version_and_to_a_named_one(tmp_path, sources):
    repo = tmp_path / "repo"
    for i in range(3):
        publish_version(repo, SPEC, manifest(f"k{i}"), *sources)
    assert rollback(repo, "tiny-llama") == 2
    assert layout.live_version(repo / "tiny-llama-engine") == 2
    assert rollback(repo, "tiny-llama", to_version=3) == 3
    with pytest.raises(PublishError, match=r"(?s)has no version 9.*choose one of \[1, 2, 3\]"):
        rollback(repo, "tiny-llama", to_version=9)


def test_a_publish_that_fills_the_disk_is_a_disk_error_and_leaves_the_live_version_serving(tmp_path, sources,
                                                                                            monkeypatch):
    repo = tmp_path / "repo"
    publish_version(repo, SPEC, manifest("k1"), *sources)
    before = (repo / "tiny-llama-engine" / "config.pbtxt").read_text()

    def no_space(*args, **kwargs):
        with open("/dev/full", "wb") as full:  # the kernel's own ENOSPC
            full.write(b"x")

    monkeypatch.setattr("trtpipe.repo.versions.link_or_copy_tree", no_space)
    with pytest.raises(DiskError, match=r"(?s)disk filled up while writing version 2 of tiny-llama-engine \(the live "
                                        r"version is untouched\).*nothing half-written was kept"):
        publish_version(repo, SPEC, manifest("k2"), *sources)
    model_dir = repo / "tiny-llama-engine"
    assert (model_dir / "config.pbtxt").read_text() == before
    assert layout.versions(model_dir) == [1]
    assert not any(p.name.startswith(".staging") for p in model_dir.iterdir())


def test_list_versions_reports_live_version_and_build(tmp_path, sources):
    repo = tmp_path / "repo"
    publish_version(repo, SPEC, manifest("abcdef1234567890"), *sources)
    [row] = list_versions(repo)
    assert (row["model"], row["live"], row["versions"], row["engine_key"]) == ("tiny-llama", 1, [1], "abcdef123456")
