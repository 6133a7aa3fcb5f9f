"""`trtpipe plan`: memory, capacity and scaling arithmetic, and the documents it writes.

The expected numbers are computed here from the published Llama 3.x architectures, independently of
trtpipe.plan. These tests check the plan trtpipe would produce; they do not run TensorRT-LLM or measure
a GPU (the plan's activation reserve and bandwidth ceiling are estimates by design).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from trtpipe.commands.plan import plan_command
from trtpipe.config import load_config
from trtpipe.errors import ConfigError
from trtpipe.hardware import GPUS, get_gpu, match_smi_name
from trtpipe.plan import ModelArch, arch_for, make_plan

H100 = GPUS["h100-sxm-80gb"]
V, H, I, L = 128256, 4096, 14336, 32  # Llama 3.1 8B: vocab, hidden, intermediate, layers; 32 heads, 8 KV heads


def llama_8b_layer_params() -> int:
    q, kv = 32 * 128, 8 * 128
    return H * q + 2 * H * kv + q * H + 3 * H * I


def test_llama_8b_parameter_count_matches_the_published_8_03b():
    expected = L * llama_8b_layer_params() + 2 * V * H + (2 * L + 1) * H
    assert expected == 8_030_261_248
    assert arch_for(load_config("llama-8b")).num_params == expected


def test_llama_8b_on_h100_weights_kv_and_capacity():
    plan = make_plan(load_config("llama-8b"), H100, input_len=2048, output_len=512)
    # FP8 linear layers at 1 byte; embedding and lm_head stay bf16 (ModelOpt leaves them unquantized).
    weights = L * llama_8b_layer_params() * 1 + 2 * V * H * 2 + (2 * L + 1) * H * 2
    assert plan.target.weight_bytes == weights == 9_081_200_640
    # KV bytes per token = layers * 2 (K, V) * kv heads * head_dim * 1 byte (fp8 KV cache).
    assert plan.target.kv_bytes_per_token_total == 32 * 2 * 8 * 128 * 1 == 65536
    # The configured cap (512 Ki tokens) is below 90% of what is free, so it decides: 32 GiB.
    target_pool, draft_pool = plan.pools
    assert (target_pool.tokens, target_pool.limited_by) == (524288, "max_tokens_in_paged_kv_cache")
    assert target_pool.pool_bytes == 524288 * 65536 == 32 << 30
    # The draft (Llama 3.2 1B: 16 layers, 8 KV heads of 64) shares the GPU with its own cap.
    assert plan.draft_memory.kv_bytes_per_token == 16 * 2 * 8 * 64 == 16384
    assert draft_pool.tokens == 524288
    # 2048 + 512 + 4 draft tokens = 81 blocks of 32; 16384 blocks hold 202 such sequences; batch caps at 64.
    assert plan.concurrency == 64 and plan.fits
    assert plan.smallest_tp == 1 and plan.smallest_tp_full_batch == 1


def test_decode_ceiling_is_bandwidth_over_bytes_read_per_token():
    plan = make_plan(load_config("llama-8b"), H100, input_len=2048, output_len=512)
    # Every weight but the embedding table (a row lookup) is read once per token, plus the KV of the
    # average context (input + half the output).
    bytes_per_token = (9_081_200_640 - V * H * 2) + 65536 * (2048 + 256)
    assert plan.decode_tokens_per_s == pytest.approx(3350e9 / bytes_per_token)
    assert 400 < plan.decode_tokens_per_s < 420


def test_concurrency_is_limited_by_kv_blocks_when_the_cache_is_small():
    cfg = load_config("llama-8b", ["engine.max_tokens_in_paged_kv_cache=65536"])
    plan = make_plan(cfg, H100, input_len=7000, output_len=1000)
    # 7000 + 1000 + 4 = 8004 tokens = 251 blocks; 65536 / 32 = 2048 blocks -> 8 sequences.
    assert plan.concurrency == 2048 // 251 == 8


def test_llama_70b_tp4_per_gpu_numbers_and_memory_fraction_pool():
    plan = make_plan(load_config("llama-70b"), H100, input_len=2048, output_len=512)
    hidden, inter, vocab, layers = 8192, 28672, 128256, 80
    layer = hidden * (64 * 128 + 2 * 8 * 128) + 64 * 128 * hidden + 3 * hidden * inter
    # Linear layers and lm_head split four ways; the input embedding is replicated on every rank.
    weights = layers * layer // 4 + vocab * hidden * 2 + vocab * hidden * 2 // 4 + (2 * layers + 1) * hidden * 2
    assert plan.target.weight_bytes == weights
    assert plan.target.kv_bytes_per_token_total == 80 * 2 * 8 * 128 == 163840
    assert plan.target.kv_bytes_per_token == 163840 // 4  # 2 of the 8 KV heads per rank
    # No cap configured: 90% of what is left after weights and the reserve, in whole 32-token blocks.
    reserve = plan.target.activation_bytes + (2 << 30)
    pool = int(0.9 * (H100.memory_bytes - weights - reserve))
    assert plan.pools[0].limited_by == "memory fraction" and plan.pools[0].pool_bytes == pool
    assert plan.pools[0].tokens == pool // 40960 // 32 * 32
    assert plan.concurrency == 128
    assert [row["tp"] for row in plan.tp_table] == [1, 2, 4, 8]
    assert plan.smallest_tp_full_batch == 2


def test_fp8_on_ampere_is_flagged_and_memory_shortfall_does_not_fit():
    plan = make_plan(load_config("llama-8b"), GPUS["a100-80gb"], input_len=1024, output_len=256)
    assert any("no FP8 support" in w for w in plan.warnings)
    tiny_gpu = get_gpu("l40s-48gb").__class__("tiny", memory_mib=8192, bandwidth_gb_s=100.0,
                                              compute_capability=(9, 0), interconnect="pcie")
    assert not make_plan(load_config("llama-8b"), tiny_gpu, input_len=1024, output_len=256).fits


def test_replicas_follow_the_measured_throughput_with_headroom():
    plan = make_plan(load_config("llama-8b"), H100, input_len=2048, output_len=512, request_rate=50,
                     per_replica_throughput=6.0)
    assert plan.replicas == 12  # ceil(50 / (6 * 0.7))
    assert plan.per_replica_rps_measured


def test_workload_longer_than_the_engine_is_refused():
    with pytest.raises(ConfigError, match="exceed the engine limits"):
        make_plan(load_config("llama-8b"), H100, input_len=8000, output_len=512)


def test_architecture_comes_from_synthetic_presets_local_config_or_the_table(tmp_path):
    from trtpipe.stages.synthetic import PRESETS

    tiny = arch_for(load_config("tiny-llama"))
    p = PRESETS["tiny-llama"]
    assert (tiny.hidden_size, tiny.num_layers, tiny.num_kv_heads, tiny.head_dim) == (
        p.hidden_size, p.num_hidden_layers, p.num_key_value_heads, p.hidden_size // p.num_attention_heads)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text(json.dumps({
        "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
        "num_key_value_heads": 8, "vocab_size": 128256, "head_dim": 64, "tie_word_embeddings": True}))
    cfg_file = tmp_path / "local.yaml"
    cfg_file.write_text(f"name: local\nbackend: reference\nsource:\n  path: {ckpt}\n")
    assert arch_for(load_config(str(cfg_file))) == ModelArch(2048, 8192, 16, 32, 8, 128256, 64, True)
    assert arch_for(load_config("llama-3.2-1b-draft")).num_params == 1_235_814_400
    with pytest.raises(ConfigError, match="not in trtpipe's table"):
        arch_for(load_config("llama-8b", ["source.hf=someone/unknown-model"]))


def test_gpu_table_and_names():
    assert {g: (s.memory_mib, s.bandwidth_gb_s, s.compute_capability, s.supports_fp8) for g, s in GPUS.items()} == {
        "h100-sxm-80gb": (81559, 3350.0, (9, 0), True), "h100-pcie-80gb": (81559, 2000.0, (9, 0), True),
        "h200-141gb": (143771, 4800.0, (9, 0), True), "gb200-186gb": (177383, 8000.0, (10, 0), True),
        "b200-180gb": (183359, 8000.0, (10, 0), True), "a100-80gb": (81920, 2039.0, (8, 0), False),
        "a100-40gb": (40960, 1555.0, (8, 0), False), "l40s-48gb": (46068, 864.0, (8, 9), True),
        "l4-24gb": (23034, 300.0, (8, 9), True)}
    assert all(s.source.startswith("https://www.nvidia.com/") for s in GPUS.values())
    assert [g for g, s in GPUS.items() if s.memory_source != "nvidia-smi"] == ["gb200-186gb"]
    assert match_smi_name("NVIDIA H100 80GB HBM3").name == "h100-sxm-80gb"
    # The longest matching name wins: a GB200 is not a B200, an L40S not an L4.
    assert [match_smi_name(n).name for n in ("NVIDIA GB200", "NVIDIA B200", "NVIDIA L40S", "NVIDIA L4",
                                             "NVIDIA H100 PCIe", "NVIDIA A100-SXM4-40GB")] == [
        "gb200-186gb", "b200-180gb", "l40s-48gb", "l4-24gb", "h100-pcie-80gb", "a100-40gb"]
    assert match_smi_name("Tesla T4") is None
    with pytest.raises(ConfigError, match="unknown GPU"):
        get_gpu("h100")


def test_plan_command_writes_the_four_documents_and_json(tmp_path):
    result = CliRunner().invoke(plan_command, ["llama-8b", "--gpu", "h100-sxm-80gb", "--request-rate", "50",
                                               "--per-replica-throughput", "6", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "KV pool llama-8b" in result.output and "replicas         12" in result.output
    docs = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert set(docs) == {"serving-configuration.md", "scaling-plan.md", "api-specification.md",
                         "performance-baseline.md", "plan.json"}
    serving = docs["serving-configuration.md"]
    assert serving.startswith("# Serving Configuration: llama-8b")
    assert "meta-llama/Llama-3.1-8B-Instruct@0e9e39f249a16976918f6564b8830bc894c89659" in serving
    assert "python3 /app/examples/quantization/quantize.py --model_dir LLAMA_8B_HF_DIR" in serving
    assert "--speculative_decoding_mode draft_tokens_external --max_draft_len 4" in serving
    # Guided decoding (xgrammar) on the engine path: the tokenizer info beside each engine.
    assert ("HF_HUB_OFFLINE=1 python3 /app/examples/generate_xgrammar_tokenizer_info.py --model_dir LLAMA_8B_HF_DIR "
            "--output_dir LLAMA_8B_ENGINE_DIR") in serving
    assert "TRTLLM_ORCHESTRATOR=1" in serving  # two engines: orchestrator mode
    scaling = docs["scaling-plan.md"]
    assert "vllm:num_requests_waiting" in scaling and "| Replicas | 12 |" in scaling and "least" in scaling
    api = docs["api-specification.md"]
    assert "/v1/chat/completions" in api and "| 429 |" in api and '{"error": {"message"' in api
    assert "trtpipe bench run --url http://127.0.0.1:9000/v1 --model llama-8b" in docs["performance-baseline.md"]
    data = json.loads(docs["plan.json"])
    assert data["kv_bytes_per_token"] == 65536 and data["weight_bytes_per_gpu"] == 9_081_200_640
    assert data["replicas"] == 12


def test_plan_command_for_tp4_shows_the_mpi_launch(tmp_path):
    result = CliRunner().invoke(plan_command, ["llama-70b", "--gpu", "h200-141gb", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    serving = (tmp_path / "serving-configuration.md").read_text()
    assert "mpirun --allow-run-as-root -n 1 /opt/tritonserver/bin/tritonserver --model-repository=/models" in serving
    assert "--load-model=llama-70b-engine" in serving and "--tp_size 4" in serving


def test_plan_command_refuses_an_unknown_gpu():
    result = CliRunner().invoke(plan_command, ["llama-8b", "--gpu", "rtx-4090"])
    assert result.exit_code == 3 and "unknown GPU 'rtx-4090'" in result.output


def test_plan_command_defaults_the_workload_to_fit_the_engine():
    result = CliRunner().invoke(plan_command, ["tiny-llama", "--gpu", "l40s-48gb"])
    assert result.exit_code == 0, result.output
    assert "sequences of 512+512 tokens" in result.output  # tiny-llama: max_input_len 896, max_seq_len 1024


def test_an_engine_that_speculates_itself_plans_one_executor_with_the_draft_inside():
    # llama-8b-pytorch: EAGLE-3 in the LLM API's speculative_config, so the draft is no model of its own. Its
    # weights load into the target's executor and its KV sits in the one pool that executor allocates.
    from trtpipe.capacity import engine_memory
    from trtpipe.config import load_draft

    config = load_config("llama-8b-pytorch")
    draft = load_draft(config)
    plan = make_plan(config, H100, input_len=2048, output_len=512)
    target, head = engine_memory(config, arch_for(config)), engine_memory(draft, arch_for(draft))
    assert [p.name for p in plan.pools] == ["llama-8b-pytorch"] and plan.draft_memory is None
    assert plan.target.weight_bytes == target.weight_bytes + head.weight_bytes
    assert plan.target.kv_bytes_per_token == target.kv_bytes_per_token + head.kv_bytes_per_token
    assert not any("two engines share" in w for w in plan.warnings)
    # The decode ceiling stays the target's own, as for a separate draft.
    alone = make_plan(config.model_copy(update={"speculation": None}), H100, input_len=2048, output_len=512)
    assert plan.decode_tokens_per_s == pytest.approx(alone.decode_tokens_per_s)
