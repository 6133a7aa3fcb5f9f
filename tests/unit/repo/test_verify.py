"""A published version records the sha256 of each of its files; verify and rollback check them."""

import os

import pytest

from tests.unit.repo.test_history import publish, sources  # noqa: F401 - fixture
from trtpipe.errors import IntegrityError
from trtpipe.manifest import Manifest
from trtpipe.repo import layout
from trtpipe.repo.verify import check_repository
from trtpipe.repo.versions import rollback

MODEL_DIR = "tiny-llama-engine"


def flip_byte(path, keep_mtime=False):
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    if keep_mtime:
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_the_manifest_records_every_file_of_the_version_but_itself(tmp_path, sources):  # noqa: F811
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    files = Manifest.read(repo / MODEL_DIR / "1" / "manifest.json").files
    assert sorted(files) == ["engine/weights.safetensors", "model.py", "spec.json", "tokenizer/tokenizer.json"]
    assert [c.ok for c in check_repository(repo)] == [True]


def test_verify_names_the_flipped_file_of_a_published_version(tmp_path, sources):  # noqa: F811
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    publish(repo, sources, "k2")
    flip_byte(repo / MODEL_DIR / "1" / "spec.json", keep_mtime=True)
    [v1, v2] = check_repository(repo, "tiny-llama")
    assert (v1.ok, v2.ok, v2.is_live) == (False, True, True)
    assert len(v1.problems) == 1 and v1.problems[0].startswith("tiny-llama-engine/1/spec.json: has sha256 ")


def test_verify_reports_a_missing_and_an_added_file(tmp_path, sources):  # noqa: F811
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    (repo / MODEL_DIR / "1" / "model.py").unlink()
    (repo / MODEL_DIR / "1" / "engine" / "extra.bin").write_bytes(b"?")
    [check] = check_repository(repo, "tiny-llama", 1)
    assert check.problems == ["tiny-llama-engine/1/engine/extra.bin: was not recorded (an unexpected file)",
                              "tiny-llama-engine/1/model.py: is missing"]


def test_rollback_to_a_corrupted_version_is_refused_and_the_live_version_stays(tmp_path, sources):  # noqa: F811
    repo = tmp_path / "repo"
    publish(repo, sources, "k1")
    publish(repo, sources, "k2")
    flip_byte(repo / MODEL_DIR / "1" / "engine" / "weights.safetensors")
    with pytest.raises(IntegrityError, match=r"refusing to roll back: version 1 of tiny-llama does not match "
                                             r"its manifest: tiny-llama-engine/1/engine/weights.safetensors: has "
                                             r"sha256") as info:
        rollback(repo, "tiny-llama", to_version=1)
    assert info.value.exit_code == 7
    assert layout.live_version(repo / MODEL_DIR) == 2
