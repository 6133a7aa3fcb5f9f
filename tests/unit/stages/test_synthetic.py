import json

import ml_dtypes
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from trtpipe.stages.base import file_hashes
from trtpipe.stages.synthetic import PRESETS, write_synthetic_checkpoint


def test_synthetic_checkpoint_is_byte_identical_when_generated_twice(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path / "a")
    write_synthetic_checkpoint("tiny-llama", tmp_path / "b")
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")


def test_synthetic_checkpoint_loads_with_safetensors_and_tokenizers(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    weights = load_file(str(tmp_path / "model.safetensors"))
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    p = PRESETS["tiny-llama"]
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["num_attention_heads"], config["num_key_value_heads"]) == (8, 2)
    assert config["vocab_size"] == tok.get_vocab_size()
    assert weights["model.embed_tokens.weight"].shape == (config["vocab_size"], p.hidden_size)
    assert weights["model.layers.0.self_attn.k_proj.weight"].shape == (2 * 32, 256)
    assert weights["lm_head.weight"].dtype == ml_dtypes.bfloat16
    assert len([k for k in weights if k.endswith("q_proj.weight")]) == p.num_hidden_layers


def test_synthetic_tokenizer_round_trips_multibyte_text_and_knows_the_chat_tokens(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path)
    tok = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "Hello, 世界! 🙂 café"
    assert tok.decode(tok.encode(text).ids) == text
    tok_config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    gen_config = json.loads((tmp_path / "generation_config.json").read_text())
    assert "<|start_header_id|>" in tok_config["chat_template"]
    assert gen_config["eos_token_id"][0] == tok.token_to_id("<|eot_id|>")


def test_draft_preset_shares_the_targets_tokenizer(tmp_path):
    write_synthetic_checkpoint("tiny-llama", tmp_path / "t")
    write_synthetic_checkpoint("tiny-llama-draft", tmp_path / "d")
    assert (tmp_path / "t" / "tokenizer.json").read_bytes() == (tmp_path / "d" / "tokenizer.json").read_bytes()
    assert json.loads((tmp_path / "d" / "config.json").read_text())["num_hidden_layers"] == 2
