"""The trt-engine build's tokenizer_info stage: the xgrammar tokenizer info the tensorrtllm backend loads.

The stage runs a stand-in for TensorRT-LLM's examples/generate_xgrammar_tokenizer_info.py (same flags, same
output file and keys, written from the tiny checkpoint's real tokenizer.json with the `tokenizers` library), so
these tests check the stage's wiring and its check of the file. They do not run TensorRT-LLM or its script.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from trtpipe.backend_registry import get_backend
from trtpipe.cache import Artifact
from trtpipe.config import load_config
from trtpipe.errors import StageError
from trtpipe.stages.synthetic import write_synthetic_checkpoint
from trtpipe.trt.guided_decoding import check_tokenizer_info

from .fakes import write_engine_dir

# Takes the script's flags and writes what tensorrt_llm.llmapi.tokenizer._xgrammar_tokenizer_info returns for a
# fast tokenizer: the vocabulary by id, the tokenizer's JSON, and [eos_token_id]. DROP names keys to leave out.
STAND_IN = textwrap.dedent('''\
    import argparse, json, os, sys
    from pathlib import Path
    from tokenizers import Tokenizer
    p = argparse.ArgumentParser()
    p.add_argument("--model_dir", type=Path, required=True)
    p.add_argument("--output_dir", type=Path, required=True)
    a = p.parse_args()
    assert os.environ.get("HF_HUB_OFFLINE") == "1", "the stage must run the script offline"
    tok = Tokenizer.from_file(str(a.model_dir / "tokenizer.json"))
    eos = json.loads((a.model_dir / "tokenizer_config.json").read_text())["eos_token"]
    info = {"encoded_vocab": [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])],
            "tokenizer_str": tok.to_str(), "stop_token_ids": [tok.token_to_id(eos)]}
    for key in os.environ.get("DROP", "").split(","):
        info.pop(key, None)
    os.makedirs(a.output_dir, exist_ok=True)
    (a.output_dir / "xgrammar_tokenizer_info.json").write_text(json.dumps(info))
    ''')


@pytest.fixture
def stage_inputs(tmp_path, monkeypatch):
    examples = tmp_path / "examples"
    examples.mkdir()
    (examples / "generate_xgrammar_tokenizer_info.py").write_text(STAND_IN)
    monkeypatch.setenv("TRTPIPE_TRTLLM_EXAMPLES", str(examples))
    monkeypatch.setenv("TRTPIPE_PYTHON", __import__("sys").executable)
    hf = tmp_path / "hf"
    write_synthetic_checkpoint("tiny-llama", hf)
    engine = write_engine_dir(tmp_path / "engine")
    return {"fetch": Artifact("fetch", "f" * 64, hf), "compile": Artifact("compile", "c" * 64, engine)}


def _run(stage_inputs, tmp_path):
    config = load_config("llama-8b")
    stage = get_backend("trt-engine").stages[-1]
    out = tmp_path / "out"
    out.mkdir()
    return stage.name, stage.run(config, stage_inputs, out), out


def test_the_stage_links_the_engine_and_adds_the_tokenizer_info_the_backend_reads(stage_inputs, tmp_path):
    name, meta, out = _run(stage_inputs, tmp_path)
    assert name == "tokenizer_info"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "rank0.engine", "xgrammar_tokenizer_info.json"]
    info = json.loads((out / "xgrammar_tokenizer_info.json").read_text())
    vocab = json.loads((stage_inputs["fetch"].path / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(info["encoded_vocab"]) >= len(vocab)  # every token, added ones included, by id
    assert meta["xgrammar_tokenizer_info"] == {"vocab_size": len(info["encoded_vocab"]),
                                               "stop_token_ids": info["stop_token_ids"]}
    assert meta["command"][1:] == [f"{tmp_path}/examples/generate_xgrammar_tokenizer_info.py", "--model_dir",
                                   str(stage_inputs["fetch"].path), "--output_dir", str(out)]


def test_a_tokenizer_info_without_tokenizer_str_fails_the_stage_and_says_what_to_do(stage_inputs, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setenv("DROP", "tokenizer_str")  # what the script writes for a tiktoken tokenizer
    with pytest.raises(StageError, match="lacks tokenizer_str, which the tensorrtllm backend reads") as e:
        _run(stage_inputs, tmp_path)
    assert "serving.guided_decoding: none" in str(e.value)


@pytest.mark.parametrize("info, match", [
    (None, "was not written"),
    ("not json", "not valid JSON"),
    ({"encoded_vocab": [], "tokenizer_str": "{}", "stop_token_ids": [2]}, "does not have the shape"),
    ({"encoded_vocab": ["a"], "tokenizer_str": "{}", "stop_token_ids": [None]}, "does not have the shape"),
])
def test_check_tokenizer_info_refuses_what_the_backend_could_not_load(tmp_path, info, match):
    path = tmp_path / "xgrammar_tokenizer_info.json"
    if info is not None:
        path.write_text(info if isinstance(info, str) else json.dumps(info))
    with pytest.raises(StageError, match=match):
        check_tokenizer_info(path)


def test_guided_decoding_none_makes_the_stage_a_pass_through_so_the_engine_is_published_as_built():
    stage = get_backend("trt-engine").stages[-1]
    assert stage.passthrough(load_config("llama-8b")) is None
    assert stage.passthrough(load_config("llama-8b", ["serving.guided_decoding=none"])) == \
        "serving.guided_decoding: none"


def test_the_tokenizer_info_key_follows_guided_decoding_but_the_engine_key_does_not(stage_inputs):
    backend = get_backend("trt-engine")
    compile_stage, info_stage = backend.stages[-2], backend.stages[-1]
    on, off = load_config("llama-8b"), load_config("llama-8b", ["serving.guided_decoding=none"])
    assert info_stage.key_inputs(on, stage_inputs)["guided_decoding"] == "xgrammar"
    inputs = {**stage_inputs, "quantize": Artifact("quantize", "q" * 64, stage_inputs["fetch"].path)}
    # Turning guided decoding on or off never rebuilds the engine.
    assert compile_stage.key_inputs(on, inputs) == compile_stage.key_inputs(off, inputs)
