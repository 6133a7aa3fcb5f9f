"""The fetch stage against a local hub (tests/hub_server.py) with the real huggingface_hub client.

Nothing here reaches huggingface.co: HF_ENDPOINT points every call at a server on 127.0.0.1, and
HF_HUB_CACHE at a per-test directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import pytest

from tests.hub_server import HubServer
from trtpipe.config import load_config
from trtpipe.errors import SourceError, StageError
from trtpipe.stages import fetch
from trtpipe.stages.synthetic import write_synthetic_checkpoint

REPO = "org/tiny"
TOKEN = "hf_test_token_do_not_print_0123456789"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("tiny-llama")
    write_synthetic_checkpoint("tiny-llama", d)
    return {p.name: p.read_bytes() for p in d.iterdir()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(fetch, "_resolved", {})
    disable_progress_bars()
    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server
    enable_progress_bars()


def run_fetch(tmp_path: Path, **source) -> tuple[dict, dict, Path]:
    """The fetch stage for a config written to disk: (key inputs, metadata, output directory)."""
    config_file = tmp_path / "hub-model.yaml"
    config_file.write_text(json.dumps({"source": {"hf": REPO, "revision": "main", **source}}))
    config = load_config(str(config_file))
    key = fetch.STAGE.key_inputs(config, {})
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}"
    out.mkdir()
    return key, fetch.STAGE.run(config, {}, out), out


def test_branch_is_resolved_to_its_commit_sha_for_the_key_and_the_metadata(hub, tmp_path, checkpoint):
    old = hub.add_commit(REPO, checkpoint)
    config = json.loads(checkpoint["config.json"])
    new = hub.add_commit(REPO, {**checkpoint, "config.json": json.dumps({**config, "rope_theta": 1.0}).encode()})
    assert old != new

    key, meta, out = run_fetch(tmp_path)

    assert key["revision"] == new
    assert meta["source"] == {"hf": REPO, "requested_revision": "main", "revision": new,
                              "verified": meta["source"]["verified"]}
    assert json.loads((out / "config.json").read_text())["rope_theta"] == 1.0
    assert meta["files"]["model.safetensors"] == hashlib.sha256(checkpoint["model.safetensors"]).hexdigest()


def test_pinned_commit_sha_is_used_as_is_even_after_the_branch_moves(hub, tmp_path, checkpoint):
    pinned = hub.add_commit(REPO, checkpoint)
    hub.add_commit(REPO, {**checkpoint, "generation_config.json": b"{}"})

    key, meta, out = run_fetch(tmp_path, revision=pinned)

    assert key["revision"] == meta["source"]["revision"] == pinned
    assert (out / "generation_config.json").read_bytes() == checkpoint["generation_config.json"]
    assert not [r for r in hub.log if "/main" in r.path], "a pinned sha needs no branch lookup"


def test_only_allow_listed_root_files_are_downloaded_and_each_is_checked_against_the_hub(hub, tmp_path, checkpoint):
    hub.add_commit(REPO, {**checkpoint, "README.md": b"# tiny", "pytorch_model.bin": b"pickle",
                          "original/consolidated.00.pth": b"pickle", "modeling_tiny.py": b"import os"})

    _, meta, out = run_fetch(tmp_path, allow_pickle=True)

    assert sorted(p.name for p in out.iterdir()) == sorted(checkpoint)
    assert {r.filename for r in hub.log if r.method == "GET" and r.filename} == set(checkpoint)
    assert meta["source"]["verified"]["model.safetensors"] == "hub sha256"  # LFS: the content's sha256
    assert meta["source"]["verified"]["tokenizer.json"] == "hub git blob id"  # plain git file: its blob id
    assert set(meta["source"]["verified"]) == set(checkpoint)


@pytest.mark.parametrize("filename, kind", [("model.safetensors", "sha256"), ("tokenizer.json", "git blob id")])
def test_corrupted_download_is_refused_naming_the_file_and_both_hashes(hub, tmp_path, checkpoint, filename, kind):
    hub.add_commit(REPO, checkpoint)
    hub.corrupt(REPO, filename)

    with pytest.raises(StageError) as e:
        run_fetch(tmp_path)

    data = checkpoint[filename]
    bad = bytes([data[0] ^ 0xFF]) + data[1:]
    if kind == "sha256":
        good_hash, bad_hash = hashlib.sha256(data).hexdigest(), hashlib.sha256(bad).hexdigest()
    else:
        from tests.hub_server import git_blob_id
        good_hash, bad_hash = git_blob_id(data), git_blob_id(bad)
    assert f"{filename} of {REPO}@" in e.value.what and f"{kind} is {bad_hash}" in e.value.what
    assert f"the hub says {good_hash}" in e.value.what

    # The bad copy is not reused from the download cache: the next run downloads it again, and succeeds.
    hub._corrupt.clear()
    _, meta, _ = run_fetch(tmp_path)
    assert len(hub.requests_for(filename)) == 2
    assert meta["files"][filename] == hashlib.sha256(data).hexdigest()


def test_dropped_connection_is_resumed_with_a_range_request(hub, tmp_path, checkpoint, monkeypatch):
    from huggingface_hub import constants

    # The client hands bytes over in 10 MiB chunks and resumes from the last whole chunk; the tiny
    # checkpoint's weights are 7 MB, so smaller chunks let it show a resume.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 20)
    hub.add_commit(REPO, checkpoint)
    hub.drop_connection_once(REPO, "model.safetensors", after_bytes=3 << 20)

    _, meta, _ = run_fetch(tmp_path)

    first, second = hub.requests_for("model.safetensors")
    assert "range" not in first.headers
    resumed_at = int(second.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at <= 3 << 20
    assert meta["files"]["model.safetensors"] == hashlib.sha256(checkpoint["model.safetensors"]).hexdigest()


def test_rerun_after_a_failed_fetch_downloads_only_the_missing_files(hub, tmp_path, checkpoint):
    hub.add_commit(REPO, checkpoint)
    hub.fail_next_get(REPO, "model.safetensors", status=500)

    with pytest.raises(StageError) as e:
        run_fetch(tmp_path)
    assert e.value.where == "fetch" and "500" in e.value.what

    _, meta, out = run_fetch(tmp_path)

    assert sorted(p.name for p in out.iterdir()) == sorted(checkpoint)
    fetched_twice = [f for f in checkpoint if len(hub.requests_for(f)) > 1]
    assert fetched_twice == ["model.safetensors"]


def test_repo_with_only_pickled_weights_is_refused_unless_allowed(hub, tmp_path, checkpoint):
    files = {**{k: v for k, v in checkpoint.items() if k != "model.safetensors"}, "pytorch_model.bin": b"pickle"}
    hub.add_commit(REPO, files)

    with pytest.raises(StageError) as e:
        run_fetch(tmp_path)
    assert "only pickled weights (pytorch_model.bin)" in e.value.what
    assert "source.allow_pickle: true" in e.value.fix
    assert not hub.requests_for("pytorch_model.bin"), "refused before downloading"



def test_allowed_pickled_weights_without_torch_are_refused_naming_the_extra(hub, tmp_path, checkpoint, monkeypatch):
    files = {**{k: v for k, v in checkpoint.items() if k != "model.safetensors"}, "pytorch_model.bin": b"pickle"}
    hub.add_commit(REPO, files)
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed

    with pytest.raises(SourceError) as e:
        run_fetch(tmp_path, allow_pickle=True)
    assert e.value.exit_code == 4 and "needs torch, which is not installed" in e.value.what
    assert "pip install 'trtpipe[pickle]'" in e.value.fix


def test_allowed_pickled_weights_are_converted_to_safetensors_and_the_pickle_dropped(hub, tmp_path, checkpoint):
    torch = pytest.importorskip("torch")
    import io

    from safetensors.numpy import load_file

    buffer = io.BytesIO()
    torch.save({"lm_head.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, buffer)
    files = {**{k: v for k, v in checkpoint.items() if k != "model.safetensors"}, "pytorch_model.bin": buffer.getvalue()}
    hub.add_commit(REPO, files)

    _, meta, out = run_fetch(tmp_path, allow_pickle=True)
    assert not (out / "pytorch_model.bin").exists()
    assert load_file(str(out / "model.safetensors"))["lm_head.weight"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert meta["source"]["converted_from_pickle"] == {"pytorch_model.bin": "model.safetensors"}


def test_repo_needing_custom_code_is_refused_before_its_weights_are_downloaded(hub, tmp_path, checkpoint):
    config = {**json.loads(checkpoint["config.json"]), "auto_map": {"AutoModel": "modeling_tiny.TinyModel"}}
    hub.add_commit(REPO, {**checkpoint, "config.json": json.dumps(config).encode()})

    with pytest.raises(StageError) as e:
        run_fetch(tmp_path)
    assert "auto_map" in e.value.what and "allow_custom_code" in e.value.fix
    assert not hub.requests_for("model.safetensors")

    _, _, out = run_fetch(tmp_path, allow_custom_code=True)
    assert (out / "model.safetensors").is_file()


def test_unknown_revision_is_reported_against_the_revision_key(hub, tmp_path, checkpoint):
    hub.add_commit(REPO, checkpoint)
    with pytest.raises(StageError) as e:
        run_fetch(tmp_path, revision="v9")
    assert e.value.where == "source.revision" and "'v9'" in e.value.what


def test_hf_token_is_sent_to_the_hub_but_never_printed_or_stored(hub, tmp_path, checkpoint, monkeypatch,
                                                                 capsys, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    hub.add_commit(REPO, checkpoint)
    hub.required_token = TOKEN
    monkeypatch.setenv("HF_TOKEN", TOKEN)

    _, meta, _ = run_fetch(tmp_path)

    assert {r.headers.get("authorization") for r in hub.log} == {f"Bearer {TOKEN}"}
    assert TOKEN not in json.dumps(meta)

    hub.required_token = "a-different-token"  # the hub now answers 401
    monkeypatch.setattr(fetch, "_resolved", {})
    with pytest.raises(StageError) as e:
        run_fetch(tmp_path)
    assert e.value.where == "source.hf" and "HF_TOKEN" in e.value.fix
    assert TOKEN not in str(e.value)

    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err + caplog.text
    written = [p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink()]
    assert written and not [p for p in written if TOKEN.encode() in p.read_bytes()]
