"""bench/grpc_direct.py without Triton: the tensors it sends, how it times a stream, and that the bench's own
summary, report and compare read its results."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from trtpipe.bench.compare import compare_results
from trtpipe.bench.config import BenchConfig, SweepPoint
from trtpipe.bench.prompts import TokenCounter, make_prompts
from trtpipe.bench.report import load_result, write_report

from bench import grpc_direct


def _tensors(inputs) -> dict[str, tuple[str, np.ndarray]]:
    """InferInput list -> {name: (datatype, value)}; the value read back from the serialized bytes."""
    dtypes = {"INT32": np.int32, "FP32": np.float32, "BOOL": np.bool_, "UINT64": np.uint64}
    out = {}
    for t in inputs:
        raw = t._get_content()
        out[t.name()] = (t.datatype(), np.frombuffer(raw, dtype=dtypes[t.datatype()]).reshape(t.shape()))
    return out


def test_an_ignore_eos_request_asks_for_exactly_output_len_greedy_tokens():
    config = BenchConfig(output_len=64, ignore_eos=True)
    call = grpc_direct.engine_call([5, 6, 7], config, end_id=2)
    tensors = _tensors(call.to_triton())

    assert tensors["input_ids"][0] == "INT32" and tensors["input_ids"][1].tolist() == [[5, 6, 7]]
    assert tensors["input_lengths"][1].tolist() == [[3]]
    assert tensors["request_output_len"][1].tolist() == [[64]]
    assert tensors["min_tokens"][1].tolist() == [[64]]
    assert tensors["streaming"] == ("BOOL", np.array([[True]]))
    assert tensors["exclude_input_in_output"][1].tolist() == [[True]]
    assert tensors["temperature"][1].tolist() == [[0.0]]
    assert "end_id" not in tensors  # ignore_eos: the frontend sends no end id either


def test_without_ignore_eos_the_end_id_is_sent_and_min_tokens_is_not():
    call = grpc_direct.engine_call([5], BenchConfig(output_len=8), end_id=2)
    tensors = _tensors(call.to_triton())
    assert tensors["end_id"][1].tolist() == [[2]]
    assert call.min_tokens == 0 and tensors.get("min_tokens", ("INT32", np.array([[0]])))[1].tolist() == [[0]]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _response(num_tokens: int, final: bool):
    ids = None if num_tokens < 0 else np.arange(num_tokens, dtype=np.int32).reshape(1, 1, -1)
    params = {"triton_final_response": SimpleNamespace(bool_param=final)}
    return SimpleNamespace(as_numpy=lambda name: ids if name == "output_ids" else None,
                           get_response=lambda: SimpleNamespace(parameters=params))


class FakeStream:
    """Plays (seconds after the previous event, result, error) triples, advancing the fake clock."""

    def __init__(self, clock: FakeClock, events):
        self.clock, self.events, self.cancelled = clock, events, False

    def __aiter__(self):
        return self._play()

    async def _play(self):
        for delay, result, error in self.events:
            self.clock.now += delay
            yield result, error

    def cancel(self):
        self.cancelled = True


class FakeClient:
    def __init__(self, stream: FakeStream):
        self.stream, self.requests = stream, []

    def stream_infer(self, requests):
        self.requests.append(requests)
        return self.stream


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(grpc_direct, "perf_counter", clock)
    return clock


async def test_a_stream_is_timed_as_the_bench_client_times_one(clock):
    # TTFT at the first response with tokens; an empty response is no chunk; the final one may carry tokens.
    stream = FakeStream(clock, [(0.010, _response(0, False), None), (0.020, _response(1, False), None),
                                (0.005, _response(2, False), None), (0.004, _response(1, True), None)])
    client = FakeClient(stream)
    call = grpc_direct.engine_call(list(range(10)), BenchConfig(output_len=4, ignore_eos=True))
    record = await grpc_direct.send_engine_request(client, "m-engine", call, request_id=3, scheduled_s=0.5,
                                                   t0=99.0)

    assert record.error is None and record.is_success
    assert record.start_s == pytest.approx(1.0) and record.end_s == pytest.approx(1.039)
    assert record.ttft_s == pytest.approx(0.030)
    assert record.itl_s == pytest.approx([0.005, 0.004])
    assert record.e2e_s == pytest.approx(0.039)
    assert (record.output_tokens, record.prompt_tokens, record.queue_s) == (4, 10, pytest.approx(0.5))
    assert stream.cancelled  # always closed, a no-op after the final response


async def test_a_triton_error_is_recorded_not_raised(clock):
    from tritonclient.utils import InferenceServerException

    error = InferenceServerException("input 'input_ids' is too long", status="StatusCode.INVALID_ARGUMENT")
    client = FakeClient(FakeStream(clock, [(0.01, _response(1, False), None), (0.01, None, error)]))
    record = await grpc_direct.send_engine_request(client, "m-engine", grpc_direct.engine_call([1], BenchConfig()),
                                                   request_id=0, scheduled_s=0.0, t0=clock.now)
    assert not record.is_success
    assert "InferenceServerException" in record.error and "too long" in record.error


async def test_a_stream_without_a_final_response_is_an_error(clock):
    client = FakeClient(FakeStream(clock, [(0.01, _response(1, False), None)]))
    record = await grpc_direct.send_engine_request(client, "m-engine", grpc_direct.engine_call([1], BenchConfig()),
                                                   request_id=0, scheduled_s=0.0, t0=clock.now)
    assert record.error and "without a final response" in record.error


@pytest.fixture
def tokenizer_path(tmp_path) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(["[UNK]", *"abcdefghijklmnopqrstuvwxyz "])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tokenizer.decoder = decoders.Fuse()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return str(path)


def test_direct_prompts_have_the_bench_lengths_but_not_the_frontend_prompts(tokenizer_path):
    config = BenchConfig(num_prompts=4, input_len=30, tokenizer_path=tokenizer_path)
    counter = TokenCounter(tokenizer_path)
    direct = grpc_direct.direct_prompts(config, counter, point_index=0)
    frontend = make_prompts(4, 30, counter, seed=config.seed, point_index=0)
    assert [len(ids) for ids in direct] == [p.num_tokens for p in frontend]
    # With KV-cache reuse on, the same prompts on both sides would measure cache hits.
    assert direct != [counter.encode(p.text) for p in frontend]


async def test_a_direct_point_gives_results_that_report_and_compare_read(clock, tokenizer_path, tmp_path):
    config = BenchConfig(concurrencies=(2,), num_prompts=3, output_len=2, ignore_eos=True,
                         tokenizer_path=tokenizer_path)

    class Client:
        def stream_infer(self, requests):
            return FakeStream(clock, [(0.01, _response(1, False), None), (0.002, _response(1, True), None)])

    point = await grpc_direct.run_direct_point(Client(), config, "m-engine", SweepPoint("concurrency", 2.0),
                                               [[1, 2], [3, 4], [5, 6]])
    s = point.summary
    assert (s.completed, s.failed, s.total_output_tokens) == (3, 0, 6)
    assert s.ttft.p50 == pytest.approx(10.0) and s.itl.p50 == pytest.approx(2.0)

    result = grpc_direct.direct_result(config, "127.0.0.1:8001", "m", [point], "2026-01-01T00:00:00+00:00",
                                       TokenCounter(tokenizer_path), label="direct")
    write_report(result, tmp_path / "direct", with_plots=False)
    report = (tmp_path / "direct" / "report.md").read_text()
    assert "`grpc://127.0.0.1:8001/m-engine` (triton-grpc, streaming)" in report
    loaded = load_result(tmp_path / "direct")
    assert loaded.model == "m-engine" and loaded.points[0].summary == s
    assert not compare_results(loaded, result).has_regression


async def test_a_request_past_its_timeout_is_an_error_and_its_stream_is_cancelled():
    import asyncio

    class SilentStream(FakeStream):
        async def _play(self):
            await asyncio.sleep(10)
            yield None, None

    stream = SilentStream(FakeClock(), [])
    record = await grpc_direct.send_engine_request(FakeClient(stream), "m-engine",
                                                   grpc_direct.engine_call([1], BenchConfig()), request_id=0,
                                                   scheduled_s=0.0, t0=0.0, timeout_s=0.01)
    assert record.error == "TimeoutError: no final response after 0.01 s"
    assert stream.cancelled
