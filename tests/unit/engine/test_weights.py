import json

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from trtpipe.engine import Engine, UnsupportedModelError, convert_checkpoint, quantize_checkpoint
from trtpipe.engine.model import forward_dense
from trtpipe.engine.weights import (
    dequantize_int4,
    dequantize_int8,
    int4_group_size,
    load_weights,
    pack_int4,
    quantize_int4,
    quantize_int8,
    unpack_int4,
)

from .tiny import TINY_HF_CONFIG, hf_tensors, limits, write_hf_checkpoint

IDS = list(range(0, 128, 5))


def logits_of(engine_dir):
    cfg, w = load_weights(engine_dir)
    return forward_dense(w, cfg, IDS)


def test_convert_writes_engine_config_and_summary(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf")
    summary = convert_checkpoint(hf, tmp_path / "e")
    cfg = json.loads((tmp_path / "e" / "config.json").read_text())
    assert cfg["engine_format"] == 1 and cfg["weight_dtype"] == "float32" and cfg["quantization"] is None
    assert cfg["architecture"] == "LlamaForCausalLM" and cfg["num_key_value_heads"] == 2
    assert summary["num_params"] == sum(v.size for v in hf_tensors(TINY_HF_CONFIG).values())
    assert summary["bytes"] == 4 * summary["num_params"]


@pytest.mark.parametrize("dtype, tol", [("bfloat16", 0.1), ("float16", 0.01)])
def test_storage_dtype_changes_bytes_not_compute(tmp_path, dtype, tol):
    hf = write_hf_checkpoint(tmp_path / "hf", dtype=np.float32)
    convert_checkpoint(hf, tmp_path / "f32")
    summary = convert_checkpoint(hf, tmp_path / dtype, dtype=dtype)
    assert summary["weight_dtype"] == dtype
    assert load_file(str(tmp_path / dtype / "weights.safetensors"))["embed_tokens"].itemsize == 2
    ref, low = logits_of(tmp_path / "f32"), logits_of(tmp_path / dtype)
    assert low.dtype == np.float32 and np.abs(ref - low).max() < tol * np.abs(ref).max()


def test_sharded_checkpoint_converts_like_a_single_file(tmp_path):
    single = write_hf_checkpoint(tmp_path / "single")
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((single / "config.json").read_text())
    tensors = load_file(str(single / "model.safetensors"))
    names = sorted(tensors)
    weight_map = {}
    for i, part in enumerate((names[::2], names[1::2])):
        shard = f"model-0000{i + 1}-of-00002.safetensors"
        save_file({n: tensors[n] for n in part}, str(sharded / shard))
        weight_map.update({n: shard for n in part})
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    convert_checkpoint(single, tmp_path / "e1")
    convert_checkpoint(sharded, tmp_path / "e2")
    assert np.array_equal(logits_of(tmp_path / "e1"), logits_of(tmp_path / "e2"))


def test_tied_embeddings_store_no_lm_head(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", tie_word_embeddings=True)
    convert_checkpoint(hf, tmp_path / "e")
    assert "lm_head" not in load_file(str(tmp_path / "e" / "weights.safetensors"))
    assert logits_of(tmp_path / "e").shape == (len(IDS), 128)


def test_missing_tensors_are_named(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf")
    t = load_file(str(hf / "model.safetensors"))
    del t["model.layers.1.mlp.up_proj.weight"]
    save_file(t, str(hf / "model.safetensors"))
    with pytest.raises(UnsupportedModelError, match="missing tensors: model.layers.1.mlp.up_proj.weight"):
        convert_checkpoint(hf, tmp_path / "e")


def test_unsupported_architecture_and_bad_dtype_are_refused(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", architectures=["FalconForCausalLM"])
    with pytest.raises(UnsupportedModelError, match="FalconForCausalLM"):
        convert_checkpoint(hf, tmp_path / "e")
    with pytest.raises(ValueError, match="`dtype`"):
        convert_checkpoint(hf, tmp_path / "e", dtype="int8")


def test_engine_refuses_an_unconverted_hf_dir(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf")
    with pytest.raises(UnsupportedModelError, match="convert_checkpoint"):
        Engine.from_dir(hf, limits())


def test_int8_roundtrip_error_is_at_most_half_a_step_per_channel():
    w = np.random.default_rng(0).standard_normal((48, 64)).astype(np.float32)
    q, scales = quantize_int8(w)
    assert q.dtype == np.int8 and scales.shape == (48,)
    err = np.abs(dequantize_int8(q, scales) - w)
    assert (err <= scales[:, None] / 2 + 1e-7).all()


def test_int4_pack_unpack_is_exact_for_every_value():
    q = np.tile(np.arange(-8, 8), (3, 2))  # (3, 32)
    packed = pack_int4(q)
    assert packed.dtype == np.uint8 and packed.shape == (3, 16)
    assert np.array_equal(unpack_int4(packed), q)


def test_int4_roundtrip_error_is_at_most_half_a_step_per_group():
    w = np.random.default_rng(1).standard_normal((16, 256)).astype(np.float32)
    packed, scales = quantize_int4(w, group_size=128)
    assert scales.shape == (16, 2)
    err = np.abs(dequantize_int4(packed, scales) - w).reshape(16, 2, 128)
    assert (err <= scales[..., None] / 2 + 1e-7).all()


def test_int4_group_size_falls_back_to_the_largest_divisor():
    assert int4_group_size(256, 128) == 128
    assert int4_group_size(64, 128) == 64
    assert int4_group_size(96, 64) == 48


@pytest.mark.parametrize("mode, max_rel_delta", [("int8", 0.02), ("int4", 0.3)])
def test_quantize_checkpoint_reports_a_bounded_logit_delta(engine_dir, tmp_path, mode, max_rel_delta):
    report = quantize_checkpoint(engine_dir, tmp_path / mode, mode)
    for key in ("mode", "group_size", "max_abs_logit_delta", "mean_abs_logit_delta",
                "perplexity_ref", "perplexity_quant"):
        assert key in report
    assert report["mode"] == mode and report["num_eval_tokens"] == 64
    assert 0 < report["max_abs_logit_delta"] < max_rel_delta * report["max_abs_logit_ref"]
    assert report["perplexity_quant"] == pytest.approx(report["perplexity_ref"], rel=max_rel_delta)
    cfg = json.loads((tmp_path / mode / "config.json").read_text())
    assert cfg["quantization"]["mode"] == mode
    stored = load_file(str(tmp_path / mode / "weights.safetensors"))
    assert stored["layers.0.qkv_proj.qweight"].dtype == (np.int8 if mode == "int8" else np.uint8)
    assert "embed_tokens" in stored and "layers.0.qkv_proj" not in stored
    assert report["bytes_out"] < report["bytes_in"]
    engine = Engine.from_dir(tmp_path / mode, limits())
    assert [len(o) for o in engine.generate([[1, 2, 3]], 4)] == [4]


def test_int4_with_small_dims_uses_the_fallback_group_size(engine_dir, tmp_path):
    report = quantize_checkpoint(engine_dir, tmp_path / "q", "int4", group_size=128, eval_token_ids=IDS)
    assert report["group_sizes_used"] == [64, 128]  # hidden 64 < 128; intermediate 128
    assert report["num_eval_tokens"] == len(IDS)


def test_quantize_refuses_bad_mode_and_double_quantization(engine_dir, tmp_path):
    with pytest.raises(ValueError, match="`mode`"):
        quantize_checkpoint(engine_dir, tmp_path / "q", "fp8")
    quantize_checkpoint(engine_dir, tmp_path / "q", "int8")
    with pytest.raises(ValueError, match="already quantized"):
        quantize_checkpoint(tmp_path / "q", tmp_path / "q2", "int4")


def test_bf16_hf_tensors_are_read_exactly(tmp_path):
    hf = write_hf_checkpoint(tmp_path / "hf", dtype=ml_dtypes.bfloat16)
    convert_checkpoint(hf, tmp_path / "e")
    src = load_file(str(hf / "model.safetensors"))["model.embed_tokens.weight"].astype(np.float32)
    assert np.array_equal(load_file(str(tmp_path / "e" / "weights.safetensors"))["embed_tokens"], src)
