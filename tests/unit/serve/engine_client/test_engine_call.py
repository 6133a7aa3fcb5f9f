"""The tensors the frontend sends to a `<model>-engine` (tensorrt_llm names and layouts)."""

import struct

import numpy as np

from trtpipe.serve.engine_client import EngineCall


def tensors_by_name(call: EngineCall) -> dict:
    return {name: (dtype, shape, raw) for name, dtype, shape, raw in call.tensors()}


def test_stop_words_list_is_ids_then_end_offsets_padded_with_minus_one():
    dtype, shape, raw = tensors_by_name(EngineCall(input_ids=[1, 2], max_new_tokens=4,
                                                   stop_token_ids=[[5], [7, 8]]))["stop_words_list"]
    assert (dtype, shape) == ("INT32", [1, 2, 3])
    assert np.frombuffer(raw, dtype="<i4").reshape(shape).tolist() == [[[5, 7, 8], [1, 3, -1]]]


def test_defaults_are_left_out_and_set_values_sent_little_endian():
    plain = tensors_by_name(EngineCall(input_ids=[3, 4, 5], max_new_tokens=7))
    assert set(plain) == {"input_ids", "input_lengths", "request_output_len", "streaming",
                          "exclude_input_in_output", "temperature"}
    assert plain["input_ids"] == ("INT32", [1, 3], struct.pack("<3i", 3, 4, 5))
    assert plain["request_output_len"][2] == struct.pack("<i", 7)
    tuned = tensors_by_name(EngineCall(input_ids=[3], max_new_tokens=1, top_k=5, seed=2**40, end_id=2))
    assert tuned["runtime_top_k"] == ("INT32", [1, 1], struct.pack("<i", 5))
    assert tuned["seed"] == ("UINT64", [1, 1], struct.pack("<Q", 2**40))
    assert tuned["end_id"] == ("INT32", [1, 1], struct.pack("<i", 2))


def test_a_guide_is_sent_as_the_two_tensorrt_llm_string_tensors():
    guide = '{"type": "object", "title": "café"}'
    sent = tensors_by_name(EngineCall(input_ids=[1], max_new_tokens=4, guide_type="json_schema", guide=guide))
    raw = guide.encode()
    assert sent["guided_decoding_guide"] == ("BYTES", [1, 1], struct.pack("<I", len(raw)) + raw)
    assert sent["guided_decoding_guide_type"] == ("BYTES", [1, 1], struct.pack("<I", 11) + b"json_schema")
    [inp] = [t for t in EngineCall(input_ids=[1], max_new_tokens=4, guide_type="regex", guide="a+").to_triton()
             if t.name() == "guided_decoding_guide"]
    assert inp.datatype() == "BYTES" and inp.shape() == [1, 1]


def test_a_speculation_round_tells_the_engine_where_the_guided_output_starts():
    sent = tensors_by_name(EngineCall(input_ids=[1, 2, 3], max_new_tokens=4, guide_type="regex", guide="a+",
                                      guide_prefix_len=2))
    assert sent["guided_decoding_prefix_len"] == ("INT32", [1, 1], struct.pack("<i", 2))
    assert "guided_decoding_prefix_len" not in tensors_by_name(EngineCall(input_ids=[1], max_new_tokens=4))
