"""Pre-quantized checkpoints (AWQ, GPTQ, FP8) on the reference engine, against an oracle written separately.

Each checkpoint is made by prequant_checkpoints.py from known float weights, packed in its producer's layout.
The oracle is the same checkpoint dequantized by that module and written as a float32 checkpoint; its float
path is the one test_model_matches_golden checks against transformers. The engine must load the packed
checkpoint into its own quantized format (no re-rounding) and give the oracle's logits and greedy tokens.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from trtpipe.engine import Engine, EngineRequest, convert_checkpoint
from trtpipe.engine.config import UnsupportedModelError
from trtpipe.engine.model import forward_dense
from trtpipe.engine.prequantized import read_safetensors
from trtpipe.engine.quantize import quantize_checkpoint
from trtpipe.engine.weights import load_weights, read_engine_dir

from .prequant_checkpoints import LINEAR, quantize_checkpoint_dir, write_float_checkpoint, write_safetensors
from .tiny import greedy, limits, run_to_completion, tokens_of, write_hf_checkpoint

FORMATS = {
    "awq-g32": ("awq", {"group": 32}),
    "gptq-v1-g32": ("gptq", {"group": 32, "v1": True}),
    "gptq-v2-g32": ("gptq", {"group": 32, "v1": False}),
    "gptq-v1-act-order-g32": ("gptq", {"group": 32, "v1": True, "act_order": True}),
    "gptq-v2-act-order-per-channel": ("gptq", {"group": None, "v1": False, "act_order": True}),
    "gptq-v1-per-channel": ("gptq", {"group": None, "v1": True}),
    "gptq-v1-sym-g32": ("gptq", {"group": 32, "v1": True, "sym": True}),
    "ct-fp8-tensor": ("ct-fp8", {"scale": "tensor"}),
    "ct-fp8-channel": ("ct-fp8", {"scale": "channel"}),
    "hf-fp8-block-48": ("hf-fp8", {"scale": "block", "block": (48, 48)}),  # blocks that do not divide the dims
    "ct-fp8-block-32": ("ct-fp8", {"scale": "block", "block": (32, 32)}),
    "modelopt-fp8": ("modelopt-fp8", {"scale": "tensor"}),
}
PROMPTS = [[1, 2, 3, 4, 5], [9, 8, 7], [100, 3, 60, 61, 62, 63, 64]]


@pytest.fixture(scope="module")
def float_src(tmp_path_factory):
    return write_hf_checkpoint(tmp_path_factory.mktemp("float-src") / "hf")


@pytest.fixture(scope="module", params=list(FORMATS))
def pair(request, float_src, tmp_path_factory):
    """(format name, engine dir from the packed checkpoint, engine dir from the oracle's float32 checkpoint,
    original float weights, oracle weights)."""
    fmt, kw = FORMATS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    oracle = quantize_checkpoint_dir(float_src, root / "quantized", fmt, **kw)
    write_float_checkpoint(root / "quantized", root / "oracle", oracle)
    convert_checkpoint(root / "quantized", root / "engine")
    convert_checkpoint(root / "oracle", root / "oracle-engine")
    original = {k: v.astype(np.float32) for k, v in load_file(str(float_src / "model.safetensors")).items()}
    return request.param, root / "engine", root / "oracle-engine", original, oracle


def test_the_oracle_is_the_float_weights_within_the_formats_rounding(pair):
    """The test's own packing and dequantization are a faithful quantizer: every weight within its step."""
    name, _, _, original, oracle = pair
    for k in original:
        if LINEAR.fullmatch(k):
            err = np.abs(original[k] - oracle[k])
            # int4: half a step of (max - min) / 15 is under 1/15 of the row's range; fp8 e4m3: 2^-4 relative.
            bound = (np.ptp(original[k], axis=1, keepdims=True) / 15 if "fp8" not in name
                     else np.abs(original[k]) * 2 ** -4 + 1e-6)
            assert (err <= bound + 1e-6).all(), k


def test_linears_stay_quantized_in_the_engine_dir(pair):
    name, engine, _, _, _ = pair
    cfg, t = read_engine_dir(engine)
    q = cfg.extra["quantization"]
    mode = "fp8" if "fp8" in name else "int4"
    assert q["mode"] == mode and q["dequantized"] == []
    assert t["layers.0.qkv_proj.qweight"].dtype == np.uint8
    assert "layers.0.qkv_proj" not in t  # no float copy
    h = cfg.hidden_size
    if mode == "int4":
        assert t["layers.0.qkv_proj.qweight"].shape == (cfg.qkv_size, h // 2)
        assert t["layers.0.qkv_proj.zeros"].dtype == np.uint8
        # Act-order with groups keeps its group index; per channel every column is in group 0 (nothing to keep).
        assert ("layers.0.qkv_proj.g_idx" in t) == ("act-order-g32" in name)
    else:
        assert t["layers.0.qkv_proj.qweight"].shape == (cfg.qkv_size, h)
    assert t["lm_head"].dtype == np.float32 and t["embed_tokens"].dtype == np.float32


def test_engine_weights_equal_the_oracle_dequantization(pair):
    _, engine, oracle_engine, _, _ = pair
    _, ours = load_weights(engine)
    _, theirs = load_weights(oracle_engine)
    for a, b in zip(ours.layers, theirs.layers):
        for field in ("qkv", "o", "gate_up", "down"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=0, atol=1e-7)


def test_logits_and_greedy_tokens_equal_the_oracle(pair):
    _, engine, oracle_engine, _, _ = pair
    cfg, ours = load_weights(engine)
    _, theirs = load_weights(oracle_engine)
    ids = PROMPTS[2]
    np.testing.assert_allclose(forward_dense(ours, cfg, ids), forward_dense(theirs, cfg, ids), rtol=0, atol=1e-4)
    outs = []
    for d in (engine, oracle_engine):
        e = Engine.from_dir(d, limits())
        reqs = [EngineRequest(f"r{i}", p, 12, sampling=greedy()) for i, p in enumerate(PROMPTS)]
        outs.append({k: tokens_of(v) for k, v in run_to_completion(e, reqs).items()})
    assert outs[0] == outs[1] and all(len(v) == 12 for v in outs[0].values())


def test_an_already_quantized_engine_is_not_quantized_again(pair, tmp_path):
    _, engine, _, _, _ = pair
    with pytest.raises(ValueError, match="already quantized"):
        quantize_checkpoint(engine, tmp_path / "again", "int4")


def test_an_ignored_module_beside_quantized_ones_is_dequantized_and_named(float_src, tmp_path):
    """compressed-tensors' `ignore` may leave k_proj float while q/v are fp8: the fused qkv goes float."""
    oracle = quantize_checkpoint_dir(float_src, tmp_path / "q", "ct-fp8", scale="channel")
    # Copies: the reader's arrays map the file this test rewrites.
    t = {k: v.copy() for k, v in read_safetensors(tmp_path / "q" / "model.safetensors").items()}
    name = "model.layers.1.self_attn.k_proj"
    del t[name + ".weight_scale"]
    t[name + ".weight"] = oracle[name + ".weight"].astype(np.float32)
    write_safetensors(tmp_path / "q" / "model.safetensors", t)
    summary = convert_checkpoint(tmp_path / "q", tmp_path / "engine")
    assert summary["dequantized"] == ["layers.1.qkv_proj"]
    cfg, tensors = read_engine_dir(tmp_path / "engine")
    assert tensors["layers.1.qkv_proj"].dtype == np.float32 and "layers.0.qkv_proj.qweight" in tensors
    write_float_checkpoint(tmp_path / "q", tmp_path / "oracle", oracle)
    convert_checkpoint(tmp_path / "oracle", tmp_path / "oracle-engine")
    _, ours = load_weights(tmp_path / "engine")
    _, theirs = load_weights(tmp_path / "oracle-engine")
    np.testing.assert_allclose(ours.layers[1].qkv, theirs.layers[1].qkv, rtol=0, atol=1e-7)


def test_fused_modules_with_different_act_order_indices_are_refused(float_src, tmp_path):
    quantize_checkpoint_dir(float_src, tmp_path / "q", "gptq", group=32, act_order=True)
    t = {k: v.copy() for k, v in read_safetensors(tmp_path / "q" / "model.safetensors").items()}
    g = "model.layers.0.self_attn.v_proj.g_idx"
    t[g] = t[g][::-1].copy()
    write_safetensors(tmp_path / "q" / "model.safetensors", t)
    with pytest.raises(UnsupportedModelError, match="g_idx"):
        convert_checkpoint(tmp_path / "q", tmp_path / "engine")


def test_an_unknown_format_is_refused_by_name(float_src, tmp_path):
    quantize_checkpoint_dir(float_src, tmp_path / "q", "awq", group=32)
    cfg = json.loads((tmp_path / "q" / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (tmp_path / "q" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UnsupportedModelError, match="bitsandbytes"):
        convert_checkpoint(tmp_path / "q", tmp_path / "engine")


def test_a_gptq_export_without_g_idx_reads_as_plain_groups(float_src, tmp_path):
    oracle = quantize_checkpoint_dir(float_src, tmp_path / "q", "gptq", group=32, v1=False)
    t = {k: v.copy() for k, v in read_safetensors(tmp_path / "q" / "model.safetensors").items()
         if not k.endswith(".g_idx")}
    write_safetensors(tmp_path / "q" / "model.safetensors", t)
    convert_checkpoint(tmp_path / "q", tmp_path / "engine")
    write_float_checkpoint(tmp_path / "q", tmp_path / "oracle", oracle)
    convert_checkpoint(tmp_path / "oracle", tmp_path / "oracle-engine")
    _, ours = load_weights(tmp_path / "engine")
    _, theirs = load_weights(tmp_path / "oracle-engine")
    np.testing.assert_allclose(ours.layers[0].gate_up, theirs.layers[0].gate_up, rtol=0, atol=1e-7)
