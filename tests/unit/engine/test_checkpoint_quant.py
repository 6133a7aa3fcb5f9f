"""Reading a checkpoint's own quantization from config.json / hf_quant_config.json, as the Hub writes them."""

from __future__ import annotations

import json

import pytest

from trtpipe.engine.checkpoint_quant import checkpoint_quant_from_configs, read_checkpoint_quant
from trtpipe.engine.config import UnsupportedModelError

AWQ = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm",
       "modules_to_not_convert": None}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True, "sym": False,
        "checkpoint_format": "gptq", "damp_percent": 0.01}
CT_FP8 = {"quant_method": "compressed-tensors", "format": "float-quantized", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"targets": ["Linear"],
                                        "weights": {"num_bits": 8, "type": "float", "strategy": "channel"},
                                        "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
                                                              "dynamic": True}}}}
MODELOPT = {"producer": {"name": "modelopt", "version": "0.33.0"},
            "quantization": {"quant_algo": "FP8", "kv_cache_quant_algo": "FP8", "exclude_modules": ["lm_head"]}}


def test_a_full_precision_checkpoint_has_no_quantization():
    assert checkpoint_quant_from_configs({"architectures": ["LlamaForCausalLM"]}) is None


def test_awq_gemm_is_int4_with_zero_points_in_groups():
    q = checkpoint_quant_from_configs({"quantization_config": AWQ})
    assert (q.scheme, q.method, q.group_size, q.zero_point, q.act_order) == ("int4-awq", "awq", 128, True, False)
    assert q.describe() == "awq int4 (group 128, zero points)"
    assert q.weight_bytes_per_param() == pytest.approx(0.5 + 2.5 / 128)


def test_awq_gemv_packing_is_named_not_read():
    q = checkpoint_quant_from_configs({"quantization_config": {**AWQ, "version": "gemv"}})
    assert (q.scheme, q.method) == ("unknown", "awq gemv 4-bit")


def test_gptq_v1_with_act_order_stores_zeros_minus_one():
    q = checkpoint_quant_from_configs({"quantization_config": GPTQ})
    assert (q.scheme, q.group_size, q.act_order, q.zeros_minus_one) == ("int4-gptq", 32, True, True)
    v2 = checkpoint_quant_from_configs({"quantization_config": {**GPTQ, "checkpoint_format": "gptq_v2"}})
    assert v2.zeros_minus_one is False


def test_gptq_group_size_minus_one_means_per_channel():
    q = checkpoint_quant_from_configs({"quantization_config": {**GPTQ, "group_size": -1}})
    assert q.group_size is None and q.weight_bytes_per_param() == 0.5


def test_gptq_8_bit_is_named_not_read():
    assert checkpoint_quant_from_configs({"quantization_config": {**GPTQ, "bits": 8}}).scheme == "unknown"


def test_compressed_tensors_fp8_per_channel_with_dynamic_activations():
    q = checkpoint_quant_from_configs({"quantization_config": CT_FP8})
    assert (q.scheme, q.weight_scale, q.activation_scheme, q.excluded) == ("fp8", "channel", "dynamic", ("lm_head",))
    assert q.weight_bytes_per_param() == 1.0


def test_compressed_tensors_int4_pack_quantized_is_named_not_read():
    qc = {**CT_FP8, "format": "pack-quantized",
          "config_groups": {"g": {"weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128}}}}
    assert checkpoint_quant_from_configs({"quantization_config": qc}).scheme == "unknown"


def test_transformers_block_fp8_keeps_its_block_shape():
    q = checkpoint_quant_from_configs({"quantization_config": {"quant_method": "fp8", "activation_scheme": "dynamic",
                                                               "weight_block_size": [128, 128]}})
    assert (q.scheme, q.weight_scale, q.block_size) == ("fp8", "block", (128, 128))


def test_modelopt_export_is_read_from_hf_quant_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps(MODELOPT))
    q = read_checkpoint_quant(tmp_path)
    assert (q.scheme, q.method, q.found_in, q.kv_cache, q.activation_scheme) == (
        "fp8", "modelopt:FP8", "hf_quant_config.json", "fp8", "static")
    assert q.to_dict()["checkpoint_config"] == MODELOPT


def test_modelopt_nvfp4_is_named_not_read():
    q = checkpoint_quant_from_configs({}, {"quantization": {"quant_algo": "NVFP4"}})
    assert (q.scheme, q.method) == ("unknown", "modelopt:NVFP4")


def test_bitsandbytes_is_named_not_read():
    q = checkpoint_quant_from_configs({"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}})
    assert (q.scheme, q.method, q.describe()) == ("unknown", "bitsandbytes", "bitsandbytes (not a format trtpipe reads)")


def test_a_malformed_quantization_config_says_which_key():
    with pytest.raises(UnsupportedModelError, match="`group_size` must be an integer"):
        checkpoint_quant_from_configs({"quantization_config": {**AWQ, "group_size": "128"}})
    with pytest.raises(UnsupportedModelError, match="must be an object"):
        checkpoint_quant_from_configs({"quantization_config": "awq"})


def test_transformers_fp8_without_a_block_size_uses_its_default_blocks_and_null_means_per_tensor():
    absent = checkpoint_quant_from_configs({"quantization_config": {"quant_method": "fp8"}})
    assert (absent.weight_scale, absent.block_size) == ("block", (128, 128))  # FineGrainedFP8Config's default
    null = checkpoint_quant_from_configs({"quantization_config": {"quant_method": "fp8", "weight_block_size": None}})
    assert (null.weight_scale, null.block_size) == ("tensor", None)


def test_compressed_tensors_fp8_block_keeps_its_block_structure():
    qc = {**CT_FP8, "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "block",
                                                        "block_structure": [128, 128]}}}}
    q = checkpoint_quant_from_configs({"quantization_config": qc})
    assert (q.scheme, q.weight_scale, q.block_size) == ("fp8", "block", (128, 128))
    assert q.describe() == "compressed-tensors fp8 e4m3 (block scales 128x128, dynamic activations)"
