"""Guided decoding tensors straight to the reference engine in a real Triton (no frontend): the tensorrt_llm
`guided_decoding_guide_type` / `guided_decoding_guide` STRING inputs, as the C++ backend takes them."""

from __future__ import annotations

import json

import jsonschema
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tokenizers import Tokenizer

from tests.integration.triton_requests import StreamSession, inputs

MODEL = "tiny-llama-engine"
PROMPT = [10, 20, 30, 40, 50, 60, 70, 80]
SCHEMA = {"type": "object", "required": ["ok"], "additionalProperties": False,
          "properties": {"ok": {"type": "boolean"}}}
pytestmark = pytest.mark.integration


def guided_inputs(guide_type: str, guide: str, **extra) -> list:
    tensors = inputs(PROMPT, 40, temperature=np.array([[1.0]], np.float32), **extra)
    for name, value in (("guided_decoding_guide_type", guide_type), ("guided_decoding_guide", guide)):
        t = grpcclient.InferInput(name, [1, 1], "BYTES")
        t.set_data_from_numpy(np.array([[value.encode()]], dtype=object))
        tensors.append(t)
    return tensors


def run(url: str, tensors: list) -> list:
    session = StreamSession(url)
    try:
        session.send(MODEL, tensors)
        return session.collect()
    finally:
        session.close()


def test_a_json_schema_guide_constrains_the_engine_output(triton, built_repo):
    tokenizer = Tokenizer.from_file(str(next(built_repo.glob(f"{MODEL}/*/tokenizer/tokenizer.json"))))
    for seed in range(4):
        got = run(triton.grpc_url, guided_inputs("json_schema", json.dumps(SCHEMA),
                                                 seed=np.array([[seed]], np.uint64)))
        assert all(err is None for _, _, err in got)
        text = tokenizer.decode([t for ids, _, _ in got if ids for t in ids])
        jsonschema.validate(json.loads(text), SCHEMA)


def test_a_guide_that_cannot_compile_is_an_error_naming_the_tensor_and_the_engine_keeps_serving(triton):
    [(_, final, err)] = run(triton.grpc_url, guided_inputs("regex", "[a-"))
    assert final and "guided_decoding_guide" in str(err)
    ok = run(triton.grpc_url, inputs(PROMPT, 3))
    assert sum(len(ids) for ids, _, _ in ok if ids) == 3
