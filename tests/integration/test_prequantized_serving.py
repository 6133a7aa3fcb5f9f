"""A pre-quantized checkpoint (GPTQ v1, act-order, group 32) built from a local path and served through real Triton
and the OpenAI frontend, answering the official openai client with the oracle's greedy text.

The oracle is the same checkpoint dequantized by the test's own code (tests/unit/engine/prequant_checkpoints.py)
and published beside it as a float32 model: both go through the same server, so equal text means equal tokens.
"""

from __future__ import annotations

import pytest
from openai import OpenAI

from tests.conftest import extra_model
from tests.unit.engine.prequant_checkpoints import quantize_checkpoint_dir, write_float_checkpoint
from trtpipe.build import build
from trtpipe.config import load_config
from trtpipe.stages.synthetic import write_synthetic_checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def models(built_repo, triton, tmp_path, monkeypatch):
    src = tmp_path / "tiny"
    write_synthetic_checkpoint("tiny-llama", src)
    oracle = quantize_checkpoint_dir(src, tmp_path / "gptq", "gptq", group=32, v1=True, act_order=True)
    write_float_checkpoint(tmp_path / "gptq", tmp_path / "oracle", oracle)
    configs = tmp_path / "configs"
    configs.mkdir()
    generators, names = [], []
    for name, checkpoint, dtype in (("prequant-gptq", tmp_path / "gptq", "bfloat16"),
                                    ("prequant-oracle", tmp_path / "oracle", "float32")):
        generator = extra_model(name, built_repo, triton, configs, monkeypatch)
        names.append(next(generator))
        generators.append(generator)
        (configs / f"{name}.yaml").write_text(f"extends: tiny-llama\nname: {name}\ndtype: {dtype}\n"
                                             f"source: {{synthetic: null, path: '{checkpoint}'}}\n")
    yield names
    for generator in generators:
        next(generator, None)


def test_a_gptq_checkpoint_serves_the_oracles_greedy_text_through_triton(built_repo, frontend, models):
    gptq, oracle = models
    for name in models:
        build(load_config(name), built_repo)
    manifest = build(load_config(gptq), built_repo).manifest  # a no-op rebuild: every stage cached
    assert manifest.stages[0].meta["checkpoint_quant"]["scheme"] == "int4-gptq"
    client = OpenAI(base_url=frontend, api_key="unused", max_retries=0)
    answers = {}
    for name in models:
        chat = client.chat.completions.create(model=name, messages=[{"role": "user", "content": "Hello there"}],
                                              max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
        assert chat.usage.completion_tokens == 12
        answers[name] = chat.choices[0].message.content
    print(answers)
    assert answers[gptq] == answers[oracle]
    float_model = client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "Hello there"}],
                                                 max_tokens=12, temperature=0, extra_body={"ignore_eos": True})
    # Not the float model it was quantized from: the served weights are the 4-bit ones.
    assert float_model.choices[0].message.content != answers[gptq]
