"""Real tiny-llama builds whose cached or published bytes are damaged: every kind of damage is caught, the
damaged entry is discarded and rebuilt, and what is published matches what was built."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.unit.repo.test_verify import flip_byte
from trtpipe.build import build, run_stages
from trtpipe.cache import ArtifactCache
from trtpipe.config import load_config
from trtpipe.integrity import sha256_file
from trtpipe.repo.verify import check_repository


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def built(records) -> dict[str, bool]:
    return {r.stage: not r.cached for r in records if not r.meta.get("passthrough")}


@pytest.mark.parametrize("stage, file, rebuilt", [
    ("fetch", "model.safetensors", {"fetch": True, "convert": False, "compile": False}),
    ("fetch", "tokenizer.json", {"fetch": True, "convert": False, "compile": False}),
    # compile hard-links convert's files: the one damaged inode is in both entries, and both are rebuilt.
    ("convert", "weights.safetensors", {"fetch": False, "convert": True, "compile": True}),
    ("compile", "config.json", {"fetch": False, "convert": True, "compile": True}),
])
def test_a_flipped_byte_in_a_cache_entry_is_caught_on_reuse_and_the_entry_rebuilt(home, caplog, stage, file,
                                                                                  rebuilt):
    cache, config = ArtifactCache(), load_config("tiny-llama")
    artifacts, _ = run_stages(config, cache)
    original = sha256_file(artifacts[stage].path / file)
    flip_byte(artifacts[stage].path / file)
    with caplog.at_level(logging.WARNING, logger="trtpipe.cache"):
        again, records = run_stages(config, cache)
    assert built(records) == rebuilt
    assert f"discarding the {stage} cache entry {artifacts[stage].key[:12]}" in caplog.text
    assert f"{file} has sha256 " in caplog.text
    assert sha256_file(again[stage].path / file) == original


def test_a_flipped_byte_with_its_mtime_put_back_is_caught_when_a_stage_reads_the_entry(home, caplog):
    repo = home / "repo"
    first = build(load_config("tiny-llama"), repo)
    weights = first.engine.path / "weights.safetensors"  # the same inode as convert's and version 1's
    original = sha256_file(weights)
    flip_byte(weights, keep_mtime=True)
    with caplog.at_level(logging.WARNING):
        second = build(load_config("tiny-llama", ["engine.max_batch_size=8"]), repo)
    assert "the convert cache entry" in caplog.text and "weights.safetensors has sha256" in caplog.text
    assert second.published.version == 2
    assert sha256_file(second.published.path / "engine" / "weights.safetensors") == original
    [v1, v2] = check_repository(repo, "tiny-llama")
    assert (v1.ok, v2.ok) == (False, True)  # version 1 shares the damaged inode; `trtpipe verify` says so
    assert v1.problems[0].startswith("tiny-llama-engine/1/engine/weights.safetensors: has sha256")


def test_a_flipped_byte_with_its_mtime_put_back_is_caught_at_publish_and_everything_rebuilt(home, caplog):
    first = build(load_config("tiny-llama"), home / "repo")
    original = sha256_file(first.engine.path / "weights.safetensors")
    flip_byte(first.engine.path / "weights.safetensors", keep_mtime=True)
    with caplog.at_level(logging.WARNING):
        other = build(load_config("tiny-llama"), home / "other-repo")  # every stage a hit, then publish
    assert "the engine cache entry's weights.safetensors has sha256" in caplog.text
    assert [r.stage for r in other.manifest.stages if not r.cached] == ["convert", "compile"]
    assert sha256_file(other.published.path / "engine" / "weights.safetensors") == original
    assert [c.ok for c in check_repository(home / "other-repo")] == [True]


def test_force_convert_over_a_damaged_fetched_checkpoint_refetches_instead_of_publishing_other_weights(home,
                                                                                                    caplog):
    repo = home / "repo"
    first = build(load_config("tiny-llama"), repo)
    published_weights = sha256_file(first.published.path / "engine" / "weights.safetensors")
    flip_byte(first.checkpoint.path / "model.safetensors", keep_mtime=True)
    with caplog.at_level(logging.WARNING):
        again = build(load_config("tiny-llama"), repo, force={"convert"})
    assert "the fetch cache entry" in caplog.text and "model.safetensors has sha256" in caplog.text
    assert again.published.unchanged and again.published.version == 1
    assert sha256_file(again.engine.path / "weights.safetensors") == published_weights


def test_a_second_build_of_one_model_waits_for_the_writer_while_another_model_builds(home, tmp_path, monkeypatch):
    import threading

    from trtpipe.repo import layout

    (tmp_path / "other-llama.yaml").write_text("extends: tiny-llama\nname: other-llama\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(tmp_path))
    repo = home / "repo"
    writer = layout.writer_lock(repo, "tiny-llama")
    writer.acquire()  # another build of tiny-llama holds the model
    events, results = [], {}
    waiting = threading.Event()

    def progress(stage, status, *_):
        events.append((stage, status))
        if status == "waiting":
            waiting.set()

    thread = threading.Thread(target=lambda: results.setdefault("tiny", build(load_config("tiny-llama"), repo,
                                                                              progress=progress)))
    thread.start()
    assert waiting.wait(30)
    other = build(load_config("other-llama"), repo)  # a different model is not held up
    assert other.published.version == 1 and "tiny" not in results
    assert events == [("wait", "waiting")]
    writer.release()
    thread.join(60)
    assert results["tiny"].published.version == 1


@pytest.mark.parametrize("draft_ref", ["path", "other-name"])
def test_a_draft_named_by_its_yaml_path_or_a_config_whose_name_differs_resolves_to_the_published_draft(
        home, tmp_path, monkeypatch, draft_ref):
    from trtpipe.repo import layout
    from trtpipe.spec import ServingSpec

    drafts = tmp_path / "drafts"
    drafts.mkdir()
    # The file is small-draft.yaml, the model it publishes is named tiny-drafter.
    (drafts / "small-draft.yaml").write_text("extends: tiny-llama\nname: tiny-drafter\n"
                                             "source: {synthetic: tiny-llama-draft}\n")
    monkeypatch.setenv("TRTPIPE_CONFIG_PATH", str(drafts))
    ref = str(drafts / "small-draft.yaml") if draft_ref == "path" else "small-draft"
    (tmp_path / "target.yaml").write_text(f"extends: tiny-llama\nname: target\nspeculation: {{draft: '{ref}'}}\n")
    repo = home / "repo"
    result = build(load_config(str(tmp_path / "target.yaml")), repo)
    spec = ServingSpec.read(result.published.path / "spec.json")
    assert spec.draft_model_name == "tiny-drafter"
    assert layout.live_version(repo / "tiny-drafter-engine") == 1


def test_publishing_a_target_whose_draft_is_not_live_is_refused_naming_the_draft(home, tmp_path):
    from trtpipe.backend_registry import get_backend
    from trtpipe.errors import PublishError
    from trtpipe.manifest import Manifest
    from trtpipe.repo.versions import publish_version

    config = load_config("tiny-llama-spec")
    artifacts, records = run_stages(config, ArtifactCache())
    manifest = Manifest(model_name=config.name, backend=config.backend, config={}, stages=records)
    with pytest.raises(PublishError, match="speculates with tiny-llama-draft, which is not published"):
        publish_version(home / "repo", get_backend("reference").serving_spec(config), manifest,
                        artifacts["compile"].path, artifacts["fetch"].path)
