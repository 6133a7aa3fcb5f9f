"""`trtpipe build` of pre-quantized checkpoints on the reference backend: each format builds from `source: path:`
and its published engine generates the oracle's greedy tokens; the manifest records the format; `plan` sizes the
weights from it; formats the engine does not read, and `quantization:` on top of one it does, are refused before
any work.

The checkpoints are the synthetic tiny-llama (its real tokenizer and bf16 weights) quantized by
tests/unit/engine/prequant_checkpoints.py; the oracle is that module's dequantization as a float32 checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.engine.prequant_checkpoints import quantize_checkpoint_dir, write_float_checkpoint
from trtpipe.build import build, run_stages
from trtpipe.cache import ArtifactCache
from trtpipe.config import load_config
from trtpipe.engine import Engine, EngineLimits, EngineRequest, SamplingParams, convert_checkpoint
from trtpipe.errors import ConfigError, SourceError
from trtpipe.hardware import GPUS
from trtpipe.manifest import Manifest
from trtpipe.plan import make_plan
from trtpipe.stages.synthetic import PRESETS, write_synthetic_checkpoint

FORMATS = {
    "awq": ("awq", {"group": 32}),
    "gptq-act-order": ("gptq", {"group": 32, "v1": True, "act_order": True}),
    "fp8-channel": ("ct-fp8", {"scale": "channel"}),
    "fp8-block": ("hf-fp8", {"scale": "block", "block": (128, 128)}),
    "modelopt-fp8": ("modelopt-fp8", {"scale": "tensor"}),
}
PROMPTS = [[1, 2, 3, 4, 5, 6, 7, 8], [300, 200, 100]]


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("TRTPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny-llama")
    write_synthetic_checkpoint("tiny-llama", d)
    return d


def config_for(tmp_path: Path, checkpoint: Path, name: str = "prequant", extra: str = ""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"extends: tiny-llama\nname: {name}\nsource: {{synthetic: null, path: '{checkpoint}'}}\n{extra}")
    return load_config(str(path))


def greedy_tokens(engine_dir: Path) -> list[list[int]]:
    engine = Engine.from_dir(engine_dir, EngineLimits(max_batch_size=4, max_seq_len=64, max_num_tokens=64,
                                                      max_tokens_in_paged_kv_cache=512))
    for i, p in enumerate(PROMPTS):
        engine.add_request(EngineRequest(f"r{i}", p, 10, sampling=SamplingParams(temperature=0.0)))
    out: dict[str, list[int]] = {f"r{i}": [] for i in range(len(PROMPTS))}
    while engine.has_unfinished_requests():
        for o in engine.step():
            out[o.request_id] += o.new_token_ids
    return [out[f"r{i}"] for i in range(len(PROMPTS))]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_format_builds_records_its_quantization_and_generates_the_oracle_tokens(fmt, tiny, tmp_path, home):
    kind, kw = FORMATS[fmt]
    oracle = quantize_checkpoint_dir(tiny, tmp_path / "ckpt", kind, **kw)
    result = build(config_for(tmp_path, tmp_path / "ckpt"), home / "repo")

    fetch_meta = result.manifest.stages[0].meta
    assert fetch_meta["checkpoint_quant"]["scheme"] == ("fp8" if "fp8" in fmt else f"int4-{kind}")
    if fmt == "modelopt-fp8":
        assert "hf_quant_config.json" in fetch_meta["files"]
        assert fetch_meta["checkpoint_quant"]["found_in"] == "hf_quant_config.json"
    convert_meta = next(s.meta for s in result.manifest.stages if s.stage == "convert")
    assert convert_meta["summary"]["kept_quantized"] == ("fp8" if "fp8" in fmt else "int4")
    published = Manifest.read(home / "repo" / "prequant-engine" / "1" / "manifest.json")
    assert published.stages[0].meta["checkpoint_quant"]["method"] == fetch_meta["checkpoint_quant"]["method"]

    write_float_checkpoint(tmp_path / "ckpt", tmp_path / "oracle", oracle)
    convert_checkpoint(tmp_path / "oracle", tmp_path / "oracle-engine", dtype="float32")
    tokens = greedy_tokens(result.engine.path)
    assert tokens == greedy_tokens(tmp_path / "oracle-engine")
    assert all(len(t) == 10 for t in tokens)


def test_quantization_on_top_of_a_quantized_checkpoint_is_refused_before_any_work(tiny, tmp_path, home):
    quantize_checkpoint_dir(tiny, tmp_path / "ckpt", "awq", group=32)
    config = config_for(tmp_path, tmp_path / "ckpt", extra="quantization: {format: int4_wo}\n")
    progress = []
    with pytest.raises(ConfigError, match="does not re-quantize") as e:
        build(config, home / "repo", progress=lambda *a: progress.append(a))
    assert e.value.exit_code == 3 and "drop `quantization:`" in e.value.fix
    assert progress == [] and not (home / "artifacts").exists()  # refused at preflight: not even fetched


@pytest.mark.parametrize("quant_config, hf_quant_config, named", [
    ({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}, None, "bitsandbytes"),
    (None, {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "NVFP4", "group_size": 16}},
     "modelopt:NVFP4"),
])
def test_a_format_the_engine_does_not_read_is_refused_at_build_with_the_reason(tiny, tmp_path, home, quant_config,
                                                                                hf_quant_config, named):
    quantize_checkpoint_dir(tiny, tmp_path / "ckpt", "awq", group=32)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg.pop("quantization_config")
    if quant_config:
        cfg["quantization_config"] = quant_config
    else:
        (tmp_path / "ckpt" / "hf_quant_config.json").write_text(json.dumps(hf_quant_config))
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(SourceError, match=named) as e:
        build(config_for(tmp_path, tmp_path / "ckpt"), home / "repo")
    assert not (home / "artifacts").exists()  # refused at preflight
    assert e.value.exit_code == 4 and "reference backend cannot serve" in e.value.what
    if named.startswith("modelopt"):
        assert "trtllm-pytorch" in e.value.fix


def test_the_build_checks_right_after_fetch_when_preflight_could_not(tiny, tmp_path, home):
    """A hub source is only read once fetched: run_stages (no preflight) refuses after fetch, before convert."""
    quantize_checkpoint_dir(tiny, tmp_path / "ckpt", "awq", group=32)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "awq", "version": "gemv", "bits": 4, "group_size": 32}
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    progress = []
    with pytest.raises(SourceError, match="awq gemv"):
        run_stages(config_for(tmp_path, tmp_path / "ckpt"), ArtifactCache(), progress=lambda *a: progress.append(a[:2]))
    assert ("fetch", "built") in progress and not any(stage == "convert" for stage, _ in progress)


def test_plan_sizes_the_weights_from_the_checkpoints_format(tiny, tmp_path):
    p = PRESETS["tiny-llama"]
    vocab = json.loads((tiny / "config.json").read_text())["vocab_size"]
    h, inter, layers, kv_dim = p.hidden_size, p.intermediate_size, p.num_hidden_layers, \
        p.num_key_value_heads * (p.hidden_size // p.num_attention_heads)
    linear_params = layers * (h * h + 2 * h * kv_dim + h * h + 3 * h * inter)
    float_bytes = (2 * vocab * h + (2 * layers + 1) * h) * 2  # embedding, lm_head and norms in bf16
    gpu = GPUS["h100-sxm-80gb"]
    # AWQ group 32: half a byte per weight + per 32 weights an fp16 scale and a 4-bit zero point.
    quantize_checkpoint_dir(tiny, tmp_path / "awq", "awq", group=32)
    plan = make_plan(config_for(tmp_path, tmp_path / "awq"), gpu, input_len=64, output_len=64)
    assert plan.target.weight_bytes == int(linear_params * (0.5 + 2.5 / 32) + float_bytes)
    # FP8: one byte per weight (its scales are a handful of floats).
    quantize_checkpoint_dir(tiny, tmp_path / "fp8", "ct-fp8", scale="channel")
    plan = make_plan(config_for(tmp_path, tmp_path / "fp8", name="fp8"), gpu, input_len=64, output_len=64)
    assert plan.target.weight_bytes == int(linear_params * 1 + float_bytes)
    from trtpipe.plan_report import serving_configuration
    assert "compressed-tensors fp8 e4m3 (channel scales" in serving_configuration(plan)
    # The same checkpoint in full precision: two bytes per weight.
    plan = make_plan(config_for(tmp_path, tiny, name="bf16"), gpu, input_len=64, output_len=64)
    assert plan.target.weight_bytes == int(linear_params * 2 + float_bytes)


def test_the_command_line_exits_with_the_source_class_and_says_why(tiny, tmp_path, home):
    from click.testing import CliRunner

    from trtpipe.cli import cli

    quantize_checkpoint_dir(tiny, tmp_path / "ckpt", "gptq", group=32)
    cfg = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    cfg["quantization_config"]["bits"] = 3
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(cfg))
    config_for(tmp_path, tmp_path / "ckpt")  # writes prequant.yaml
    result = CliRunner().invoke(cli, ["build", str(tmp_path / "prequant.yaml"), "--repo", str(home / "repo")])
    assert result.exit_code == 4, result.output
    assert "quantization (gptq 3-bit" in result.output and "Fix:" in result.output
