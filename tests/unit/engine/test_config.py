import pytest

from trtpipe.engine import LlamaConfig, UnsupportedModelError

from .tiny import TINY_HF_CONFIG


def hf(**kw) -> dict:
    return {**TINY_HF_CONFIG, **kw}


def test_unsupported_architecture_is_refused_naming_the_supported_ones():
    with pytest.raises(UnsupportedModelError) as e:
        LlamaConfig.from_hf_config(hf(architectures=["GPT2LMHeadModel"]))
    msg = str(e.value)
    assert "GPT2LMHeadModel" in msg
    for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
        assert name in msg


def test_unsupported_model_error_is_a_value_error():
    assert issubclass(UnsupportedModelError, ValueError)


def test_mistral_with_sliding_window_is_refused_clearly():
    with pytest.raises(UnsupportedModelError, match=r"sliding.window.*4096.*sliding_window: null"):
        LlamaConfig.from_hf_config(hf(architectures=["MistralForCausalLM"], sliding_window=4096))


def test_mistral_without_sliding_window_is_accepted():
    cfg = LlamaConfig.from_hf_config(hf(architectures=["MistralForCausalLM"], sliding_window=None))
    assert cfg.architecture == "MistralForCausalLM" and not cfg.qkv_bias


def test_qwen2_has_qkv_bias_and_refuses_only_an_enabled_window():
    cfg = LlamaConfig.from_hf_config(hf(architectures=["Qwen2ForCausalLM"], sliding_window=4096,
                                        use_sliding_window=False))
    assert cfg.qkv_bias and not cfg.o_bias
    with pytest.raises(UnsupportedModelError, match="use_sliding_window"):
        LlamaConfig.from_hf_config(hf(architectures=["Qwen2ForCausalLM"], use_sliding_window=True))


def test_gqa_head_dim_and_tied_embeddings_are_read():
    cfg = LlamaConfig.from_hf_config(hf(head_dim=32, num_key_value_heads=1, tie_word_embeddings=True))
    assert (cfg.head_dim, cfg.num_key_value_heads, cfg.num_queries_per_kv) == (32, 1, 4)
    assert cfg.tie_word_embeddings
    assert LlamaConfig.from_hf_config(hf()).head_dim == 16  # hidden / heads when not given


def test_llama3_rope_scaling_is_parsed_from_either_config_style():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    old = LlamaConfig.from_hf_config(hf(rope_theta=500000.0, rope_scaling=scaling))
    new = LlamaConfig.from_hf_config(hf(rope_parameters={**scaling, "rope_theta": 500000.0}))
    assert old.rope_scaling == new.rope_scaling and old.rope_scaling["factor"] == 8.0
    assert old.rope_theta == new.rope_theta == 500000.0
    assert LlamaConfig.from_hf_config(hf(rope_scaling=None)).rope_scaling is None


def test_unsupported_rope_scaling_is_refused_naming_supported_types():
    with pytest.raises(UnsupportedModelError, match=r"'yarn'.*llama3"):
        LlamaConfig.from_hf_config(hf(rope_scaling={"rope_type": "yarn", "factor": 4.0}))


def test_mlp_bias_and_non_divisible_gqa_are_refused():
    with pytest.raises(UnsupportedModelError, match="mlp_bias"):
        LlamaConfig.from_hf_config(hf(mlp_bias=True))
    with pytest.raises(UnsupportedModelError, match="num_key_value_heads=3"):
        LlamaConfig.from_hf_config(hf(num_key_value_heads=3))


def test_engine_dict_roundtrip_keeps_fields_and_extras():
    cfg = LlamaConfig.from_hf_config(hf())
    d = {**cfg.to_dict(), "engine_format": 1, "quantization": None}
    back = LlamaConfig.from_dict(d)
    assert back == cfg and back.extra == {"engine_format": 1, "quantization": None}
