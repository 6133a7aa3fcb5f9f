"""A draft's tokenizer is compatible when ids mean the same: vocabulary, merges and special tokens, not bytes."""

import json

from trtpipe.stages.synthetic import write_synthetic_checkpoint
from trtpipe.stages.tokenizer_compat import differences


def test_a_re_saved_tokenizer_json_with_other_bytes_is_the_same_tokenizer(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path / "a")
    original = tmp_path / "a" / "tokenizer.json"
    data = json.loads(original.read_text())
    # What another library version writes: merges as "a b" strings, other key order and whitespace, another
    # normalizer/decoder detail.
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in data["model"]["merges"]]
    data["decoder"] = {**data["decoder"], "trim_offsets": False}
    resaved = tmp_path / "resaved.json"
    resaved.write_text(json.dumps(dict(reversed(list(data.items()))), indent=4))
    assert resaved.read_bytes() != original.read_bytes()
    assert differences(original, resaved) == []


def test_a_different_vocabulary_or_special_token_is_named(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path / "a")
    original = tmp_path / "a" / "tokenizer.json"
    data = json.loads(original.read_text())
    data["added_tokens"][0]["content"] = "<|other|>"
    vocab = data["model"]["vocab"]
    first = next(iter(vocab))
    vocab["renamed"] = vocab.pop(first)
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(data))
    assert differences(original, changed) == ["vocabulary", "special tokens"]
