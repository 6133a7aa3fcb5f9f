"""The stored responses: bounded by count and by characters, least recently used out first, per process."""

from __future__ import annotations

from trtpipe.serve.openai.response_store import ResponseStore, StoredResponse


def stored(response_id: str, num_chars: int = 10, output: list | None = None) -> StoredResponse:
    return StoredResponse({"id": response_id, "output": output or []}, [{"role": "user", "content": "x"}], num_chars)


def test_beyond_the_count_bound_the_least_recently_used_goes_first():
    store = ResponseStore(max_responses=2, max_chars=1000)
    store.put(stored("a"))
    store.put(stored("b"))
    assert store.get("a") is not None  # a is now the most recently used
    store.put(stored("c"))
    assert (store.get("a") is not None, store.get("b"), store.get("c") is not None) == (True, None, True)
    assert len(store) == 2 and store.num_chars == 20


def test_beyond_the_character_bound_as_many_as_needed_go():
    store = ResponseStore(max_responses=10, max_chars=100)
    for name in "abc":
        store.put(stored(name, 30))
    store.put(stored("d", 70))  # 90 + 70 > 100: a and b must go (30 + 70 = 100 fits)
    assert [r for r in "abcd" if store.get(r) is not None] == ["c", "d"] and store.num_chars == 100


def test_a_response_larger_than_the_whole_bound_is_not_stored_and_evicts_nothing():
    store = ResponseStore(max_responses=10, max_chars=100)
    store.put(stored("a", 60))
    assert store.put(stored("big", 101)) is False
    assert store.get("big") is None and store.get("a") is not None and store.num_chars == 60


def test_delete_frees_its_characters_and_a_second_delete_finds_nothing():
    store = ResponseStore()
    store.put(stored("a", 40))
    assert store.delete("a") is True and store.num_chars == 0 and len(store) == 0
    assert store.delete("a") is False


def test_storing_an_id_again_replaces_it_without_counting_it_twice():
    store = ResponseStore()
    store.put(stored("a", 40))
    store.put(stored("a", 25))
    assert len(store) == 1 and store.num_chars == 25


def test_the_conversation_a_continuation_starts_from_is_the_context_then_the_output():
    out = [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}]
    assert stored("a", output=out).conversation == [{"role": "user", "content": "x"}] + out
