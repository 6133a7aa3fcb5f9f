"""The numbers themselves, on hand-made records whose right answers are known exactly."""

import numpy as np
import pytest

from trtpipe.bench.config import Slo
from trtpipe.bench.metrics import meets_slo, stats_ms, summarize
from trtpipe.bench.results import RequestRecord


def make_record(request_id=0, *, start=0.0, ttft=0.05, itl=0.01, num_chunks=20, output_tokens=None, error=None,
                scheduled=None, prompt_tokens=10):
    chunk_times = [] if error else [start + ttft + k * itl for k in range(num_chunks)]
    end = chunk_times[-1] if chunk_times else start + 0.001
    return RequestRecord(request_id=request_id, scheduled_s=start if scheduled is None else scheduled, start_s=start,
                         end_s=end, chunk_times_s=chunk_times, prompt_tokens=prompt_tokens,
                         output_tokens=num_chunks if output_tokens is None else output_tokens, error=error)


def test_stats_are_numpy_linear_percentiles_in_ms():
    values_ms = np.arange(1, 101, dtype=float)  # 1..100 ms
    stats = stats_ms(values_ms / 1000)
    assert stats.count == 100
    assert stats.mean == pytest.approx(50.5)
    assert stats.median == pytest.approx(50.5)
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p95 == pytest.approx(95.05)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.std == pytest.approx(np.std(values_ms))


def test_stats_of_a_single_value_are_that_value_and_of_none_are_none():
    assert stats_ms([0.25]).p99 == pytest.approx(250.0)
    assert stats_ms([]) is None


def test_request_timings_follow_vllm_definitions():
    record = make_record(start=1.0, ttft=0.05, itl=0.01, num_chunks=20)
    assert record.ttft_s == pytest.approx(0.05)
    assert record.e2e_s == pytest.approx(0.24)
    assert record.itl_s == pytest.approx([0.01] * 19)
    assert record.tpot_s == pytest.approx(0.19 / 19)


def test_tpot_uses_output_tokens_not_chunks_when_a_chunk_carries_several_tokens():
    record = make_record(ttft=0.05, itl=0.02, num_chunks=10, output_tokens=20)  # 2 tokens per chunk
    assert record.mean_itl_s == pytest.approx(0.02)
    assert record.tpot_s == pytest.approx(0.18 / 19)


def test_itl_pools_every_gap_of_every_completed_request():
    records = [make_record(0, itl=0.01, num_chunks=5), make_record(1, itl=0.03, num_chunks=3)]
    summary = summarize(records, duration_s=1.0)
    assert summary.itl.count == 4 + 2
    assert summary.itl.mean == pytest.approx((4 * 10 + 2 * 30) / 6)
    assert summary.itl.p50 == pytest.approx(10.0)


def test_throughputs_divide_completed_requests_and_tokens_by_duration():
    records = [make_record(i, num_chunks=20, prompt_tokens=10) for i in range(4)] + [make_record(9, error="HTTP 500")]
    summary = summarize(records, duration_s=2.0)
    assert (summary.num_requests, summary.completed, summary.failed) == (5, 4, 1)
    assert summary.request_throughput == pytest.approx(2.0)
    assert summary.output_throughput == pytest.approx(40.0)
    assert summary.total_token_throughput == pytest.approx(60.0)
    assert summary.errors == {"HTTP 500": 1}
    assert summary.error_rate == pytest.approx(0.2)


def test_failed_requests_are_kept_out_of_latency_percentiles():
    records = [make_record(0, ttft=0.05), make_record(1, error="ConnectError")]
    summary = summarize(records, duration_s=1.0)
    assert summary.ttft.count == 1
    assert summary.ttft.p99 == pytest.approx(50.0)


def test_goodput_counts_only_completed_requests_within_every_slo():
    slo = Slo(ttft_s=0.1, e2e_s=0.5)
    good = make_record(0, ttft=0.05, itl=0.01, num_chunks=20)  # e2e 0.24
    slow_first_token = make_record(1, ttft=0.2, itl=0.01, num_chunks=20)
    slow_overall = make_record(2, ttft=0.05, itl=0.05, num_chunks=20)  # e2e 1.0
    failed = make_record(3, error="HTTP 500")
    records = [good, slow_first_token, slow_overall, failed]
    assert [meets_slo(r, slo) for r in records] == [True, False, False, False]

    summary = summarize(records, duration_s=2.0, slo=slo, slo_attainment=0.25)
    assert summary.goodput == pytest.approx(0.5)
    assert summary.slo_attainment == pytest.approx(0.25)
    assert summary.meets_slo is True
    assert summarize(records, duration_s=2.0, slo=slo, slo_attainment=0.95).meets_slo is False


def test_itl_and_tpot_slos_judge_the_request_mean_gap_and_time_per_token():
    record = make_record(ttft=0.05, itl=0.02, num_chunks=10, output_tokens=20)  # ITL 20 ms, TPOT ~9.5 ms
    assert meets_slo(record, Slo(tpot_s=0.010))
    assert not meets_slo(record, Slo(itl_s=0.015))


def test_no_slo_means_no_goodput():
    summary = summarize([make_record()], duration_s=1.0)
    assert summary.goodput is None and summary.meets_slo is None


def test_client_queue_time_is_reported_apart_from_ttft():
    record = make_record(start=0.3, scheduled=0.1, ttft=0.05)
    summary = summarize([record], duration_s=1.0)
    assert summary.queue.p50 == pytest.approx(200.0)
    assert summary.ttft.p50 == pytest.approx(50.0)
