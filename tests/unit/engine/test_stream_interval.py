"""EngineLoop's stream_interval: the first token at once, then every N tokens, the rest with the final flag.

The engine is the real one (the tiny test model); the sender records what Triton's response sender would be
handed, since Triton's sender exists only inside a running Python-backend model (tests/integration covers that).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trtpipe.engine import EngineRequest
from trtpipe.python_models.loop import EngineLoop
from trtpipe.python_models.tensors import RequestOptions

from .tiny import greedy


class RecordingSender:
    def __init__(self) -> None:
        self.responses: list[tuple[list[int], list[float] | None, bool]] = []
        self.done = threading.Event()

    def send(self, tensors, *, error=None, final=False) -> None:
        assert error is None, error
        ids = tensors["output_ids"].reshape(-1).tolist() if tensors is not None else []
        lp = tensors["output_log_probs"].reshape(-1).tolist() if tensors and "output_log_probs" in tensors else None
        self.responses.append((ids, lp, final))
        if final:
            self.done.set()

    def is_cancelled(self) -> bool:
        return False


def stream(make_engine, interval: int, max_new_tokens: int, log_probs: bool = False) -> RecordingSender:
    loop = EngineLoop(make_engine(), stream_interval=interval)
    loop.start()
    sender = RecordingSender()
    try:
        request = EngineRequest("r", [5, 6, 7, 8, 9], max_new_tokens, sampling=greedy(), return_log_probs=log_probs)
        loop.submit(request, RequestOptions(streaming=True, exclude_input_in_output=True, return_log_probs=log_probs,
                                            return_num_input_tokens=True, return_num_output_tokens=True), sender)
        assert sender.done.wait(30), "the request did not finish"
    finally:
        loop.shutdown()
    return sender


def test_stream_interval_1_sends_every_token_in_its_own_response(make_engine):
    sender = stream(make_engine, interval=1, max_new_tokens=10)
    assert [len(ids) for ids, _, _ in sender.responses] == [1] * 10
    assert [final for *_, final in sender.responses] == [False] * 9 + [True]


@pytest.mark.parametrize("interval, sizes", [(4, [1, 4, 4, 1]), (3, [1, 3, 3, 3]), (16, [1, 9])])
def test_stream_interval_sends_first_token_at_once_then_every_n(make_engine, interval, sizes):
    reference = stream(make_engine, interval=1, max_new_tokens=10)
    sender = stream(make_engine, interval=interval, max_new_tokens=10)
    assert [len(ids) for ids, _, _ in sender.responses] == sizes
    assert sender.responses[-1][2] is True and not any(final for *_, final in sender.responses[:-1])
    # The same tokens, only grouped differently.
    assert sum((ids for ids, _, _ in sender.responses), []) == sum((ids for ids, _, _ in reference.responses), [])


def test_stream_interval_keeps_log_probs_aligned_with_tokens(make_engine):
    reference = stream(make_engine, interval=1, max_new_tokens=7, log_probs=True)
    sender = stream(make_engine, interval=3, max_new_tokens=7, log_probs=True)
    assert all(len(ids) == len(lp) for ids, lp, _ in sender.responses)
    got = sum((lp for _, lp, _ in sender.responses), [])
    want = sum((lp for _, lp, _ in reference.responses), [])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


class StopRecorder:
    """Every response, error included (the stopped request's sender and the stop request's own)."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.done = threading.Event()

    def send(self, tensors, *, error=None, final=False) -> None:
        self.sent.append((tensors, error, final))
        if final:
            self.done.set()

    def is_cancelled(self) -> bool:
        return False


def test_a_stop_request_ends_the_running_request_and_answers_with_an_empty_final_response(make_engine):
    loop = EngineLoop(make_engine())
    loop.start()
    running, stopper = StopRecorder(), StopRecorder()
    try:
        loop.submit(EngineRequest("r", [5, 6, 7], 50, sampling=greedy()),
                    RequestOptions(streaming=True, exclude_input_in_output=True, return_log_probs=False,
                                   return_num_input_tokens=False, return_num_output_tokens=False), running)
        loop.stop_request("r", stopper)
        assert running.done.wait(30) and stopper.done.wait(30)
    finally:
        loop.shutdown()
    assert running.sent[-1] == (None, "request stopped by a `stop` request", True)
    tokens = sum(len(t["output_ids"].reshape(-1)) for t, _, _ in running.sent if t)
    assert tokens < 50  # stopped, not run to its 50 tokens
    # A response with no tensors, not the bare final flag (None): see EngineLoop.stop_request.
    assert stopper.sent == [({}, None, True)]
