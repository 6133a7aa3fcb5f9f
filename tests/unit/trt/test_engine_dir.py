"""Engine-directory verification on fake trtllm-build outputs.

The directories are written by the test in the layout TensorRT-LLM's Engine.save produces (config.json +
rank{N}.engine); these tests check trtpipe's verification of such a directory, not TensorRT-LLM itself.
"""

from __future__ import annotations

import pytest

from trtpipe.errors import StageError
from trtpipe.trt.engine_dir import expected_limits, verify_engine_dir

from .fakes import write_engine_dir

# trtllm-build records max_seq_len + max_draft_len for a speculative target (llama-8b: 8192 + 4).
TARGET_BUILD = {"max_seq_len": 8196, "max_draft_len": 4, "speculative_decoding_mode": 2}
TP4_BUILD = {"max_batch_size": 128}


def test_tp4_engine_with_four_ranks_verifies_and_reports_its_limits(tmp_path, llama_70b):
    engine = write_engine_dir(tmp_path / "engine", tp=4, build=TP4_BUILD)
    limits = verify_engine_dir(engine, llama_70b)
    assert limits["world_size"] == 4 and limits["tp_size"] == 4 and limits["pp_size"] == 1
    assert limits["rank_files"] == ["rank0.engine", "rank1.engine", "rank2.engine", "rank3.engine"]
    assert (limits["max_batch_size"], limits["max_seq_len"], limits["max_num_tokens"]) == (128, 8192, 8192)
    assert limits["quant_algo"] == "FP8" and limits["kv_cache_quant_algo"] == "FP8"
    assert limits["tensorrt_llm_version"] == "1.1.0"


def test_speculative_target_expects_the_builder_to_add_max_draft_len(tmp_path, llama_8b):
    assert expected_limits(llama_8b)["max_seq_len"] == 8196
    limits = verify_engine_dir(write_engine_dir(tmp_path / "e", build=TARGET_BUILD), llama_8b)
    assert limits["max_draft_len"] == 4


def test_target_built_without_draft_tokens_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e")  # a plain engine: max_draft_len 0, max_seq_len 8192
    with pytest.raises(StageError, match="max_seq_len is 8192, the config implies 8196"):
        verify_engine_dir(engine, llama_8b)


def test_wrong_speculative_mode_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build={**TARGET_BUILD, "speculative_decoding_mode": 4})
    with pytest.raises(StageError, match="not draft_tokens_external"):
        verify_engine_dir(engine, llama_8b)


def test_draft_engine_is_checked_without_speculation(tmp_path, draft_1b):
    assert verify_engine_dir(write_engine_dir(tmp_path / "d"), draft_1b, draft=True)["max_draft_len"] == 0


def test_missing_rank_file_is_named(tmp_path, llama_70b):
    engine = write_engine_dir(tmp_path / "e", tp=4, ranks=[0, 1, 3], build=TP4_BUILD)
    with pytest.raises(StageError, match="missing rank2.engine") as e:
        verify_engine_dir(engine, llama_70b)
    assert "world size 4" in str(e.value)


def test_stale_extra_rank_file_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", ranks=[0, 1], build=TARGET_BUILD)
    with pytest.raises(StageError, match="unexpected rank1.engine"):
        verify_engine_dir(engine, llama_8b)


def test_missing_config_json_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", config_json=False)
    with pytest.raises(StageError, match="config.json is missing"):
        verify_engine_dir(engine, llama_8b)


def test_invalid_config_json_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build=TARGET_BUILD)
    (engine / "config.json").write_text("{not json")
    with pytest.raises(StageError, match="not valid JSON"):
        verify_engine_dir(engine, llama_8b)


def test_engine_built_for_another_tp_is_refused(tmp_path, llama_70b):
    engine = write_engine_dir(tmp_path / "e", tp=2, build=TP4_BUILD)
    with pytest.raises(StageError, match="engine is tp=2, pp=1 but the config asks for tp=4"):
        verify_engine_dir(engine, llama_70b)


def test_world_size_must_equal_tp_times_pp(tmp_path, llama_70b):
    engine = write_engine_dir(tmp_path / "e", tp=4, build=TP4_BUILD)
    import json

    data = json.loads((engine / "config.json").read_text())
    data["pretrained_config"]["mapping"]["world_size"] = 8
    (engine / "config.json").write_text(json.dumps(data))
    with pytest.raises(StageError, match="world_size is 8, not tp\\*pp = 4"):
        verify_engine_dir(engine, llama_70b)


def test_empty_rank_file_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build=TARGET_BUILD)
    (engine / "rank0.engine").write_bytes(b"")
    with pytest.raises(StageError, match="empty engine file"):
        verify_engine_dir(engine, llama_8b)


def test_continuous_kv_cache_is_refused(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build={**TARGET_BUILD, "kv_cache_type": "CONTINUOUS"})
    with pytest.raises(StageError, match="no paged KV cache"):
        verify_engine_dir(engine, llama_8b)


def test_paged_context_fmha_turned_off_by_the_builder_is_caught(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build=TARGET_BUILD, plugin={"use_paged_context_fmha": False})
    with pytest.raises(StageError, match="paged context FMHA is off"):
        verify_engine_dir(engine, llama_8b)


def test_quantization_must_match_the_config(tmp_path, llama_8b):
    engine = write_engine_dir(tmp_path / "e", build=TARGET_BUILD, quant={"kv_cache_quant_algo": None})
    with pytest.raises(StageError, match="kv_cache_quant_algo is None, expected FP8"):
        verify_engine_dir(engine, llama_8b)
    engine = write_engine_dir(tmp_path / "f", build=TARGET_BUILD, quant={"quant_algo": "W8A16"})
    with pytest.raises(StageError, match="quant_algo is W8A16, expected FP8"):
        verify_engine_dir(engine, llama_8b)


def test_missing_directory_is_refused(tmp_path, llama_8b):
    with pytest.raises(StageError, match="does not exist"):
        verify_engine_dir(tmp_path / "nowhere", llama_8b)


def test_quantized_engine_for_an_unquantized_config_is_refused(tmp_path):
    from trtpipe.config import load_config

    cfg = load_config("llama-70b", ["quantization=null"])
    engine = write_engine_dir(tmp_path / "e", tp=4, build=TP4_BUILD, quant={"kv_cache_quant_algo": None})
    with pytest.raises(StageError, match="quantized \\(FP8\\) but the config is not"):
        verify_engine_dir(engine, cfg)
