"""fetch from a local checkpoint directory: only the checkpoint's files, nothing from outside it, refusals early."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from trtpipe.config import load_config
from trtpipe.errors import SourceError
from trtpipe.stages import fetch
from trtpipe.stages.synthetic import write_synthetic_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    write_synthetic_checkpoint("tiny-llama", d)
    return d


@pytest.fixture
def ckpt(tiny, tmp_path) -> Path:
    d = tmp_path / "ckpt"
    shutil.copytree(tiny, d)
    return d


def run_fetch(tmp_path: Path, path: Path, **source):
    config_file = tmp_path / "local.yaml"
    config_file.write_text(json.dumps({"source": {"path": str(path), **source}}))
    config = load_config(str(config_file))
    key = fetch.STAGE.key_inputs(config, {})
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return key, fetch.STAGE.run(config, {}, out), out


def test_only_the_checkpoint_files_are_copied_and_keyed(ckpt, tmp_path):
    (ckpt / "notes.txt").write_text("not part of the checkpoint")
    (ckpt / "original").mkdir()
    (ckpt / "original" / "consolidated.pth").write_bytes(b"other format")
    key, meta, out = run_fetch(tmp_path, ckpt)
    expected = ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
                "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in out.iterdir()) == expected
    assert sorted(key["path_files"]) == sorted(meta["files"]) == expected


def test_a_symlink_leaving_the_checkpoint_directory_is_refused(ckpt, tmp_path):
    outside = tmp_path / "secrets.json"
    outside.write_text(json.dumps({"chat_template": "{{ 'stolen' }}"}))
    (ckpt / "tokenizer_config.json").unlink()
    (ckpt / "tokenizer_config.json").symlink_to(outside)
    with pytest.raises(SourceError) as e:
        run_fetch(tmp_path, ckpt)
    assert e.value.exit_code == 4
    assert e.value.what == f"{ckpt}/tokenizer_config.json is a symlink to {outside}, outside the checkpoint directory"


def test_a_symlink_within_the_checkpoint_directory_is_copied_as_bytes(ckpt, tmp_path):
    os.rename(ckpt / "model.safetensors", ckpt / "weights-v1.safetensors")
    (ckpt / "model.safetensors").symlink_to("weights-v1.safetensors")
    _, _, out = run_fetch(tmp_path, ckpt)
    assert not (out / "model.safetensors").is_symlink()
    assert (out / "model.safetensors").read_bytes() == (ckpt / "weights-v1.safetensors").read_bytes()


def test_a_checkpoint_without_tokenizer_json_is_refused_at_fetch_with_the_fix(ckpt, tmp_path):
    (ckpt / "tokenizer.json").unlink()
    (ckpt / "tokenizer.model").write_bytes(b"sentencepiece")
    with pytest.raises(SourceError) as e:
        fetch.STAGE.key_inputs(load_config_for(tmp_path, ckpt), {})
    assert e.value.what == f"{ckpt} has no tokenizer.json (only a SentencePiece tokenizer.model)"
    assert "save_pretrained" in e.value.fix


def test_pickle_only_local_weights_are_refused_naming_allow_pickle_and_nothing_is_copied(ckpt, tmp_path):
    os.rename(ckpt / "model.safetensors", ckpt / "pytorch_model.bin")
    with pytest.raises(SourceError) as e:
        run_fetch(tmp_path, ckpt)
    assert e.value.where == "source.allow_pickle"
    assert "only pickled weights (pytorch_model.bin)" in e.value.what
    assert "source.allow_pickle: true" in e.value.fix
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def load_config_for(tmp_path: Path, path: Path):
    config_file = tmp_path / "local.yaml"
    config_file.write_text(json.dumps({"source": {"path": str(path)}}))
    return load_config(str(config_file))
