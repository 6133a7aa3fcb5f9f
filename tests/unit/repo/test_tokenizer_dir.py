"""The published tokenizer/ carries the chat template wherever the checkpoint kept it."""

import json

from trtpipe.repo.tokenizer_dir import write_tokenizer_dir

TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def checkpoint(tmp_path, **files):
    d = tmp_path / "ckpt"
    d.mkdir()
    (d / "tokenizer.json").write_text("{}")
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    for name, text in files.items():
        (d / name.replace("_jinja", ".jinja").replace("_json", ".json")).write_text(text)
    return d


def test_chat_template_jinja_is_written_into_the_published_tokenizer_config(tmp_path):
    verbatim = write_tokenizer_dir(checkpoint(tmp_path, chat_template_jinja=TEMPLATE), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text()) == \
        {"eos_token": "</s>", "chat_template": TEMPLATE}
    assert (tmp_path / "out" / "chat_template.jinja").read_text() == TEMPLATE
    assert verbatim == {"tokenizer.json", "chat_template.jinja"}


def test_chat_template_json_is_used_when_there_is_no_jinja_file(tmp_path):
    write_tokenizer_dir(checkpoint(tmp_path, chat_template_json=json.dumps({"chat_template": TEMPLATE})),
                        tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["chat_template"] == TEMPLATE


def test_a_template_only_in_tokenizer_config_leaves_the_file_byte_for_byte(tmp_path):
    ckpt = checkpoint(tmp_path)
    (ckpt / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    verbatim = write_tokenizer_dir(ckpt, tmp_path / "out")
    assert (tmp_path / "out" / "tokenizer_config.json").read_bytes() == (ckpt / "tokenizer_config.json").read_bytes()
    assert verbatim == {"tokenizer.json", "tokenizer_config.json"}
