"""The project's own checkpoints: real Hugging Face-format Llama files with random weights.

They let the whole chain (fetch -> convert -> compile -> publish -> Triton -> OpenAI frontend) run on any
machine without downloading weights. Output is byte-identical for the same preset: the weights come from a
seeded generator and the tokenizer is trained on text shipped with the package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from trtpipe.errors import ConfigError

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus.txt"
BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
SPECIAL_TOKENS = [BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT]

# Llama 3's chat format, written for this tokenizer.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


@dataclass(frozen=True)
class SyntheticPreset:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_target: int = 1024
    max_position_embeddings: int = 2048
    seed: int = 0


PRESETS = {
    "tiny-llama": SyntheticPreset(hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                                  num_attention_heads=8, num_key_value_heads=2, seed=0),
    # Same tokenizer, a quarter of the compute: the draft for speculative decoding.
    "tiny-llama-draft": SyntheticPreset(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, seed=1),
}


def train_tokenizer(vocab_target: int) -> Tokenizer:
    """Byte-level BPE (as Llama 3 / GPT-2), so every UTF-8 string round-trips."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_target, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS.read_text(encoding="utf-8").splitlines(), trainer=trainer)
    return tok


def _weights(p: SyntheticPreset, vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(p.seed)
    head_dim = p.hidden_size // p.num_attention_heads
    kv_dim = p.num_key_value_heads * head_dim

    def linear(out_dim: int, in_dim: int) -> np.ndarray:
        # HF Linear weights are (out_features, in_features).
        return (rng.standard_normal((out_dim, in_dim), dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)

    w = {"model.embed_tokens.weight": linear(vocab_size, p.hidden_size)}
    for i in range(p.num_hidden_layers):
        pre = f"model.layers.{i}."
        w[pre + "input_layernorm.weight"] = np.ones(p.hidden_size, dtype=ml_dtypes.bfloat16)
        w[pre + "post_attention_layernorm.weight"] = np.ones(p.hidden_size, dtype=ml_dtypes.bfloat16)
        w[pre + "self_attn.q_proj.weight"] = linear(p.hidden_size, p.hidden_size)
        w[pre + "self_attn.k_proj.weight"] = linear(kv_dim, p.hidden_size)
        w[pre + "self_attn.v_proj.weight"] = linear(kv_dim, p.hidden_size)
        w[pre + "self_attn.o_proj.weight"] = linear(p.hidden_size, p.hidden_size)
        w[pre + "mlp.gate_proj.weight"] = linear(p.intermediate_size, p.hidden_size)
        w[pre + "mlp.up_proj.weight"] = linear(p.intermediate_size, p.hidden_size)
        w[pre + "mlp.down_proj.weight"] = linear(p.hidden_size, p.intermediate_size)
    w["model.norm.weight"] = np.ones(p.hidden_size, dtype=ml_dtypes.bfloat16)
    w["lm_head.weight"] = linear(vocab_size, p.hidden_size)
    return w


def _dump(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_synthetic_checkpoint(preset_name: str, out_dir: Path) -> None:
    """Write config.json, model.safetensors (bf16), tokenizer files and generation_config.json."""
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown synthetic checkpoint {preset_name!r}", where="source.synthetic",
                          fix=f"use one of: {', '.join(PRESETS)}")
    p = PRESETS[preset_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(p.vocab_target)
    vocab_size = tok.get_vocab_size()
    bos_id, eos_id, eot_id = (tok.token_to_id(t) for t in (BOS, EOS, EOT))

    tok.save(str(out_dir / "tokenizer.json"))
    _dump(out_dir / "tokenizer_config.json", {
        "bos_token": BOS, "eos_token": EOT, "pad_token": EOS, "chat_template": CHAT_TEMPLATE,
        "add_bos_token": False, "model_max_length": p.max_position_embeddings,
        "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False,
    })
    _dump(out_dir / "special_tokens_map.json", {"bos_token": BOS, "eos_token": EOT, "pad_token": EOS})
    _dump(out_dir / "generation_config.json", {
        "bos_token_id": bos_id, "eos_token_id": [eot_id, eos_id], "pad_token_id": eos_id, "do_sample": False,
    })
    _dump(out_dir / "config.json", {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": p.hidden_size, "intermediate_size": p.intermediate_size,
        "num_hidden_layers": p.num_hidden_layers, "num_attention_heads": p.num_attention_heads,
        "num_key_value_heads": p.num_key_value_heads, "head_dim": p.hidden_size // p.num_attention_heads,
        "vocab_size": vocab_size, "max_position_embeddings": p.max_position_embeddings,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "rope_scaling": None, "hidden_act": "silu",
        "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
        "bos_token_id": bos_id, "eos_token_id": eot_id, "torch_dtype": "bfloat16",
    })
    save_file(_weights(p, vocab_size), str(out_dir / "model.safetensors"), metadata={"format": "pt"})
