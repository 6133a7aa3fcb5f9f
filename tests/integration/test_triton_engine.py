"""The reference engine behind a real Triton, spoken to with the real tritonclient over gRPC."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.integration.triton_requests import StreamSession, engine_state, generate, inputs
from trtpipe.serve.engine_client.calls import EngineRejected
from trtpipe.serve.engine_client.client import _error_from_message

MODEL = "tiny-llama-engine"
PROMPT = [10, 20, 30, 40, 50, 60, 70, 80]
pytestmark = pytest.mark.integration


def tokens(responses) -> list[int]:
    return [t for ids, _, err in responses if ids for t in ids]


def test_streaming_responses_carry_only_new_tokens_and_the_last_is_final(triton):
    responses = generate(triton.grpc_url, MODEL, PROMPT, 12, temperature=np.array([[0.0]], dtype=np.float32))
    assert all(err is None for _, _, err in responses)
    assert [final for _, final, _ in responses] == [False] * (len(responses) - 1) + [True]
    assert len(tokens(responses)) == 12
    assert all(len(ids) >= 1 for ids, _, _ in responses[:-1])


def test_non_streaming_returns_prompt_plus_output_unless_excluded(triton):
    greedy = {"temperature": np.array([[0.0]], dtype=np.float32)}
    streamed = tokens(generate(triton.grpc_url, MODEL, PROMPT, 8, **greedy))
    [(with_input, final, err)] = generate(triton.grpc_url, MODEL, PROMPT, 8, streaming=False,
                                          exclude_input=False, **greedy)
    [(without_input, _, _)] = generate(triton.grpc_url, MODEL, PROMPT, 8, streaming=False, **greedy)
    assert final and err is None
    assert with_input == PROMPT + streamed
    assert without_input == streamed


def test_concurrent_greedy_requests_equal_the_same_request_alone(triton):
    greedy = {"temperature": np.array([[0.0]], dtype=np.float32)}
    prompts = [[(7 * i + j) % 500 + 5 for j in range(6 + i)] for i in range(8)]
    alone = [tokens(generate(triton.grpc_url, MODEL, p, 10, **greedy)) for p in prompts]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda p: tokens(generate(triton.grpc_url, MODEL, p, 10, **greedy)), prompts))
    assert together == alone


def test_same_seed_gives_the_same_sample(triton):
    sampled = {"temperature": np.array([[1.0]], dtype=np.float32), "seed": np.array([[1234]], dtype=np.uint64)}
    first = tokens(generate(triton.grpc_url, MODEL, PROMPT, 16, **sampled))
    second = tokens(generate(triton.grpc_url, MODEL, PROMPT, 16, **sampled))
    assert first == second


def test_a_bad_request_gets_an_error_and_the_next_request_still_works(triton):
    [(_, final, err)] = generate(triton.grpc_url, MODEL, PROMPT, 0)
    assert final and "request_output_len" in str(err)
    # The frontend tells a refused request (400) from a failing server by the prefix the Python model puts there.
    engine_error = _error_from_message(str(err))
    assert isinstance(engine_error, EngineRejected) and str(engine_error).startswith("request_output_len must be")
    assert len(tokens(generate(triton.grpc_url, MODEL, PROMPT, 4))) == 4


def test_cancelled_stream_frees_the_request_and_its_kv_blocks(triton):
    # Several long streams at once, so that generation outlasts a /metrics scrape on a loaded machine (one
    # 800-token stream takes under 2 s); every one of them is cancelled.
    sessions = [StreamSession(triton.grpc_url) for _ in range(6)]
    for session in sessions:
        session.send(MODEL, inputs(PROMPT * 8, 900, min_tokens=np.array([[900]], dtype=np.int32)))
    for session in sessions:
        session.responses.get(timeout=30)  # generation has started
    deadline = time.monotonic() + 10  # the engine publishes its gauges at most every 50 ms
    busy = engine_state(triton.ports.metrics)
    while time.monotonic() < deadline and not busy.get("num_active_requests"):
        time.sleep(0.05)
        busy = engine_state(triton.ports.metrics)
    for session in sessions:
        session.close(cancel=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        state = engine_state(triton.ports.metrics)
        if state.get("num_active_requests") == 0 and state.get("kv_blocks_used") == 0:
            break
        time.sleep(0.1)
    assert busy["num_active_requests"] >= 1 and busy["kv_blocks_used"] >= 1
    assert state["num_active_requests"] == 0 and state["kv_blocks_used"] == 0


def test_a_request_naming_its_outputs_gets_exactly_those_and_the_model_stays_up(triton):
    # The frontend names `outputs`; the Python 3.12 stub crashed pruning the others itself (model.py's _Sender).
    import tritonclient.grpc as grpcclient

    for _ in range(2):  # a second request proves the stub survived the first
        session = StreamSession(triton.grpc_url)
        got = []
        try:
            session.client.async_stream_infer(MODEL, inputs(PROMPT, 3), request_id=f"named-{_}",
                                              outputs=[grpcclient.InferRequestedOutput("output_ids")])
            while True:
                result, error = session.responses.get(timeout=60)
                assert error is None, error
                response = result.get_response()
                got.append({o.name for o in response.outputs})
                if response.parameters["triton_final_response"].bool_param:
                    break
        finally:
            session.close()
        assert got and all(names <= {"output_ids"} for names in got)
        assert {"output_ids"} in got
