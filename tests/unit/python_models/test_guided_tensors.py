"""guided_decoding_guide_type / guided_decoding_guide tensors -> the request's own grammar state."""

from __future__ import annotations

import numpy as np
import pytest

from trtpipe.engine.grammar import GrammarCompiler
from trtpipe.python_models.tensors import BadRequest, decode_request
from trtpipe.stages.synthetic import write_synthetic_checkpoint


@pytest.fixture(scope="module")
def grammars(tmp_path_factory) -> GrammarCompiler:
    d = tmp_path_factory.mktemp("tok")
    write_synthetic_checkpoint("tiny-llama", d)
    return GrammarCompiler.from_tokenizer_dir(d, 1024)


def tensors(**extra):
    base = {"input_ids": np.array([[5, 6, 7]], np.int32), "request_output_len": np.array([[8]], np.int32)}
    # Triton's Python backend hands STRING tensors over as object arrays of bytes, shape [1, 1].
    return base | {k: np.array([[v.encode()]], dtype=object) for k, v in extra.items()}


def test_a_guide_becomes_a_fresh_grammar_state_per_request_from_one_compile(grammars):
    t = tensors(guided_decoding_guide_type="json_schema", guided_decoding_guide='{"type": "object"}')
    a, _ = decode_request("a", t, grammars)
    b, _ = decode_request("b", t, grammars)
    assert a.grammar is not None and a.grammar is not b.grammar
    assert grammars.num_compiled == 1
    assert decode_request("c", tensors(), grammars)[0].grammar is None


def test_json_needs_no_guide_text(grammars):
    req, _ = decode_request("a", tensors(guided_decoding_guide_type="json"), grammars)
    assert req.grammar is not None


@pytest.mark.parametrize("extra,says", [
    ({"guided_decoding_guide_type": "regex", "guided_decoding_guide": "(a"}, "input 'guided_decoding_guide'"),
    ({"guided_decoding_guide_type": "regex"}, "needs the input 'guided_decoding_guide'"),
    ({"guided_decoding_guide": "a+"}, "needs 'guided_decoding_guide_type'"),
    ({"guided_decoding_guide_type": "yaml", "guided_decoding_guide": "a"}, "must be one of"),
])
def test_bad_guides_are_refused_naming_the_tensor(grammars, extra, says):
    with pytest.raises(BadRequest, match=says):
        decode_request("a", tensors(**extra), grammars)


def test_a_guide_without_a_tokenizer_is_refused():
    with pytest.raises(BadRequest, match="needs the model's tokenizer"):
        decode_request("a", tensors(guided_decoding_guide_type="json"), None)


def test_a_prefix_len_fast_forwards_the_grammar_over_the_generated_tokens(grammars):
    probe = grammars.compile("regex", "ab+c").new_state()
    a = int(probe.allowed().nonzero()[0][0])  # the token for "a"
    assert probe.accept(a)
    b = int(probe.allowed().nonzero()[0][0])
    t = tensors(guided_decoding_guide_type="regex", guided_decoding_guide="ab+c")
    t["input_ids"] = np.array([[5, 6, a, b]], np.int32)
    t["guided_decoding_prefix_len"] = np.array([[2]], np.int32)
    req, _ = decode_request("a", t, grammars)
    assert not req.grammar.is_accepting and not req.grammar.allowed()[a]  # past "a": no second "a"
    t["guided_decoding_prefix_len"] = np.array([[3]], np.int32)  # 6 is not where the guide starts
    with pytest.raises(BadRequest, match="does not follow the guide"):
        decode_request("b", t, grammars)
