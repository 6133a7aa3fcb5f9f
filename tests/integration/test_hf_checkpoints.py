"""A checkpoint in the layout current transformers saves (sharded safetensors with an index, the chat template in
chat_template.jinja and not in tokenizer_config.json), built from a local path and served through the frontend.

transformers itself is not a test dependency (it needs torch to save a model); the layout is written with the
same pieces transformers uses: huggingface_hub's shard splitter and filename pattern, safetensors' writer, and
the index format {"metadata": {"total_size"}, "weight_map"}.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from huggingface_hub import split_state_dict_into_shards_factory
from openai import OpenAI
from safetensors.numpy import load_file, save_file

from tests.conftest import extra_model
from trtpipe.build import build
from trtpipe.config import load_config
from trtpipe.stages.synthetic import write_synthetic_checkpoint

pytestmark = pytest.mark.integration


def save_like_transformers(tmp_path: Path) -> Path:
    """tiny-llama re-saved as transformers >= 4.43 writes it: 2 MB shards, chat_template.jinja."""
    src, out = tmp_path / "src", tmp_path / "hf-checkpoint"
    write_synthetic_checkpoint("tiny-llama", src)
    out.mkdir()
    tensors = load_file(str(src / "model.safetensors"))
    split = split_state_dict_into_shards_factory(tensors, get_storage_size=lambda a: a.nbytes,
                                                 filename_pattern="model{suffix}.safetensors", max_shard_size="2MB")
    assert split.is_sharded and len(split.filename_to_tensors) > 1
    for filename, names in split.filename_to_tensors.items():
        save_file({n: tensors[n] for n in names}, str(out / filename), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())}, "weight_map": split.tensor_to_filename}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    tok_cfg = json.loads((src / "tokenizer_config.json").read_text())
    (out / "chat_template.jinja").write_text(tok_cfg.pop("chat_template"))
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    for name in ("config.json", "generation_config.json", "tokenizer.json", "special_tokens_map.json"):
        shutil.copy(src / name, out / name)
    return out


@pytest.fixture
def hf_model(built_repo, triton, tmp_path, monkeypatch):
    checkpoint = save_like_transformers(tmp_path)
    generator = extra_model("hf-layout", built_repo, triton, tmp_path / "configs", monkeypatch)
    (tmp_path / "configs").mkdir(exist_ok=True)
    name = next(generator)
    (tmp_path / "configs" / f"{name}.yaml").write_text(
        f"extends: tiny-llama\nname: {name}\nsource: {{synthetic: null, path: '{checkpoint}'}}\n")
    yield name
    next(generator, None)


def test_a_sharded_checkpoint_with_chat_template_jinja_builds_and_serves_chat(built_repo, frontend, hf_model):
    result = build(load_config(hf_model), built_repo)
    assert sorted(f for f in result.checkpoint.meta["files"] if f.endswith(".safetensors"))[0] == \
        "model-00001-of-00004.safetensors"
    client = OpenAI(base_url=frontend, api_key="unused", max_retries=0)
    chat = client.chat.completions.create(model=hf_model, messages=[{"role": "user", "content": "Hello"}],
                                          max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 8
    reference = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hello"}],
                                               max_tokens=8, temperature=0, extra_body={"ignore_eos": True})
    assert chat.choices[0].message.content == reference.choices[0].message.content  # the same weights
