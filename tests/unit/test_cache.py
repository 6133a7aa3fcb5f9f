import json
import threading

from trtpipe.cache import ArtifactCache, cache_key


def test_cache_key_ignores_dict_order_and_changes_with_any_value():
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert cache_key({"a": 1}) != cache_key({"a": 2})


def test_hit_returns_the_stored_artifact_without_calling_the_build_function(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build(out):
        calls.append(out)
        (out / "weights.bin").write_bytes(b"x")
        return {"n": 1}

    first, cached_first = cache.get_or_build("convert", "k1", build)
    second, cached_second = cache.get_or_build("convert", "k1", build)
    assert (cached_first, cached_second) == (False, True)
    assert len(calls) == 1
    assert second.path == first.path == tmp_path / "convert" / "k1"
    assert second.meta == {"n": 1}


def test_failed_build_leaves_no_entry_and_no_temporary_directory(tmp_path):
    cache = ArtifactCache(tmp_path)

    def broken(out):
        (out / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")

    try:
        cache.get_or_build("convert", "k", broken)
    except RuntimeError:
        pass
    assert cache.get("convert", "k") is None
    assert [p.name for p in (tmp_path / "convert").iterdir() if not p.name.endswith(".lock")] == []


def test_entry_without_metadata_is_treated_as_corrupt_and_rebuilt(tmp_path):
    cache = ArtifactCache(tmp_path)
    (tmp_path / "fetch" / "k").mkdir(parents=True)
    artifact, cached = cache.get_or_build("fetch", "k", lambda out: {"rebuilt": True})
    assert not cached and artifact.meta == {"rebuilt": True}
    assert json.loads((artifact.path / "artifact.json").read_text()) == {"rebuilt": True}


def test_concurrent_builds_of_one_key_run_the_build_once(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls, started = [], threading.Event()

    def slow(out):
        calls.append(1)
        started.set()
        threading.Event().wait(0.2)
        return {}

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get_or_build("compile", "k", slow)[1]))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(results) == [False, True, True]
