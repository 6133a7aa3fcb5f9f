import pytest

from trtpipe.serve.openai.choice_stream import StopStringMatcher
from trtpipe.serve.openai.text import ChatTemplateError, ModelText
from trtpipe.stages.synthetic import write_synthetic_checkpoint


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> ModelText:
    d = tmp_path_factory.mktemp("ckpt")
    write_synthetic_checkpoint("tiny-llama", d)
    return ModelText.from_dir(d)


@pytest.mark.parametrize("sample", ["Hello world", "你好，世界。今天天气很好。", "emoji 🙂🚀👍🏽 and flags 🇫🇷",
                                    " leading spaces  and\nnewlines", "café naïve Zürich"])
def test_incremental_detokenizer_joined_deltas_equal_the_full_decode(text, sample):
    ids = text.encode(sample)
    detok = text.detokenizer()
    deltas = [detok.add([i]) for i in ids] + [detok.flush()]
    assert "".join(deltas) == text.tokenizer.decode(ids) == sample


def test_incremental_detokenizer_never_emits_a_split_utf8_character(text):
    detok = text.detokenizer()
    for i in text.encode("🙂🚀👍🏽 你好"):
        assert "\ufffd" not in detok.add([i])


def test_chat_template_renders_llama3_format_with_generation_prompt(text):
    rendered = text.render_chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
    assert rendered == ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert text.encode(rendered)[0] == text.tokenizer.token_to_id("<|begin_of_text|>")


def test_chat_template_is_sandboxed(text):
    evil = ModelText(text.tokenizer, "{{ ''.__class__.__mro__[1].__subclasses__() }}", None, None, [])
    with pytest.raises(Exception, match="unsafe|not safely|access"):
        evil.render_chat([{"role": "user", "content": "x"}])


def test_model_without_template_gives_a_clear_error(text):
    bare = ModelText(text.tokenizer, None, None, None, [])
    with pytest.raises(ChatTemplateError, match="no chat template"):
        bare.render_chat([{"role": "user", "content": "x"}])


def test_stop_string_across_deltas_is_never_emitted():
    m = StopStringMatcher(["STOP"])
    out = []
    for piece in ["hello S", "TO", "P and more"]:
        text, stopped = m.feed(piece)
        out.append(text)
        if stopped:
            break
    assert "".join(out) == "hello " and stopped


def test_stop_string_prefix_that_does_not_complete_is_released():
    m = StopStringMatcher(["STOP"])
    assert m.feed("ST") == ("", False)
    assert m.feed("ay") == ("STay", False)
    assert m.feed("ST") == ("", False)
    assert m.flush() == "ST"


def test_earliest_of_several_stop_strings_wins():
    m = StopStringMatcher(["world", "lo"])
    assert m.feed("hello world") == ("hel", True)


def test_the_byte_table_fast_path_is_used_for_byte_level_bpe(text):
    assert text.token_bytes is not None
    assert type(text.detokenizer()).__name__ == "ByteDetokenizer"


def test_both_detokenizers_agree_with_the_full_decode_however_the_ids_are_grouped(text):
    import random

    from trtpipe.serve.openai.text import ByteDetokenizer, IncrementalDetokenizer

    rng = random.Random(0)
    vocab = text.tokenizer.get_vocab_size()
    for _ in range(300):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 24))]
        cuts = sorted(rng.sample(range(1, len(ids)), min(3, len(ids) - 1))) if len(ids) > 1 else []
        groups = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)])]
        for detok in (ByteDetokenizer(text.token_bytes), IncrementalDetokenizer(text.tokenizer)):
            deltas = [detok.add(g) for g in groups] + [detok.flush()]
            # Equal joins also prove no delta ended inside a character: a premature U+FFFD would remain.
            assert "".join(deltas) == text.tokenizer.decode(ids, skip_special_tokens=True)


def test_a_chat_template_override_replaces_the_checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("ckpt2")
    write_synthetic_checkpoint("tiny-llama", d)
    custom = ModelText.from_dir(d, "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}>")
    assert custom.render_chat([{"role": "user", "content": "Hi"}]) == "[user] Hi\n>"


def test_raise_exception_in_a_template_is_a_chat_template_error(text):
    strict = ModelText(text.tokenizer, "{{ raise_exception('roles must alternate') }}", None, None, [])
    with pytest.raises(ChatTemplateError, match="roles must alternate"):
        strict.render_chat([{"role": "user", "content": "x"}])


def test_templates_get_the_hugging_face_helpers(text):
    source = ("{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m | tojson }}{% endfor %}"
              "{{ strftime_now('%Y') | length }}")
    rendered = ModelText(text.tokenizer, source, None, None, []).render_chat(
        [{"role": "user", "content": "héllo"}, {"role": "assistant", "content": "x"}], add_generation_prompt=False)
    assert rendered == '{"role": "user", "content": "héllo"}4'
