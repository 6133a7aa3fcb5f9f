"""End-to-end numbers against a local server whose delays are known (see fake_server.py).

The server sends token k at exactly 50 ms + k * 10 ms after a request arrives, 20 tokens. Delays can
only be observed longer than that, never shorter, so lower bounds are tight and upper bounds loose
(a noisy 2-core machine runs both client and server here).
"""

import math

import pytest

from trtpipe.bench import BenchConfig, parse_slo, run_sweep
from trtpipe.bench.results import arrival_groups

TTFT_MS, ITL_MS, NUM_TOKENS = 50.0, 10.0, 20
E2E_MS = TTFT_MS + (NUM_TOKENS - 1) * ITL_MS  # 240


def bench(fake_server, **kwargs):
    defaults = dict(url=fake_server.url, input_len=16, num_prompts=6, concurrencies=(1,))
    return run_sweep(BenchConfig(**{**defaults, **kwargs}))


@pytest.fixture(scope="module")
def closed_loop_result(fake_server):
    return bench(fake_server, concurrencies=(1, 4), num_prompts=8)


def test_ttft_e2e_itl_and_tpot_match_the_server_delays(closed_loop_result):
    for point in closed_loop_result.points:
        s = point.summary
        assert s.completed == 8 and s.failed == 0
        # The role-only chunk arrives at once; TTFT must wait for the first real content.
        # Lower bounds are tight (the server cannot be faster than its sleeps); upper bounds are loose,
        # because a loaded 2-core machine delays the event loop but never speeds it up.
        assert TTFT_MS <= s.ttft.p50 <= TTFT_MS * 2 + 25
        assert E2E_MS <= s.e2el.p50 <= E2E_MS * 2
        assert ITL_MS * 0.7 <= s.itl.p50 <= ITL_MS * 2
        # One gap per chunk after the first, except chunks that came in one burst with the first (a busy client
        # reads them together; they have no gap of their own to report).
        extra_in_first_burst = sum(len(arrival_groups(r.chunk_times_s)[0]) - 1 for r in point.requests)
        assert s.itl.count == 8 * (NUM_TOKENS - 1) - extra_in_first_burst
        assert ITL_MS * 0.9 <= s.tpot.mean <= ITL_MS * 2


def test_output_throughput_is_tokens_over_wall_time(closed_loop_result):
    one, four = (p.summary for p in closed_loop_result.points)
    for s in (one, four):
        assert s.total_output_tokens == 8 * NUM_TOKENS  # from usage
        assert s.output_throughput == pytest.approx(s.total_output_tokens / s.duration_s)
    # One at a time, each request takes at least 240 ms.
    assert one.output_throughput <= NUM_TOKENS / (E2E_MS / 1000) * 1.001
    assert one.output_throughput >= NUM_TOKENS / (E2E_MS / 1000) * 0.7
    assert four.output_throughput >= 2.5 * one.output_throughput


def test_model_defaults_to_the_first_id_from_models(closed_loop_result, fake_server):
    assert closed_loop_result.model == "fake"
    assert closed_loop_result.config["model"] == "fake"


def test_request_body_asks_for_usage_and_passes_ignore_eos(fake_server, server_log):
    bench(fake_server, num_prompts=1, output_len=7, ignore_eos=True)
    body = server_log.bodies[-1]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 7 and body["ignore_eos"] is True and body["min_tokens"] == 7
    assert len(body["messages"][0]["content"].split()) == 16


def test_without_usage_output_tokens_are_counted_from_chunks(fake_server):
    result = bench(fake_server, model="no-usage", num_prompts=2)
    record = result.points[0].requests[0]
    assert (record.output_tokens, record.output_tokens_source) == (NUM_TOKENS, "chunks")


def test_server_errors_are_counted_without_aborting_the_run(fake_server):
    result = bench(fake_server, model="flaky", num_prompts=6, concurrencies=(2,), slo=parse_slo("e2e=10s"))
    s = result.points[0].summary
    assert (s.num_requests, s.completed, s.failed) == (6, 3, 3)
    assert s.errors == {"HTTP 500: injected failure": 3}
    assert s.slo_attainment == pytest.approx(0.5)
    assert s.ttft.count == 3


def test_open_loop_keeps_client_queue_time_out_of_ttft(fake_server):
    result = bench(fake_server, concurrencies=(), request_rates=(math.inf,), num_prompts=4, max_concurrency=2)
    records = result.points[0].requests
    queued = sorted(r.queue_s for r in records)
    assert queued[2] >= E2E_MS / 1000  # two waited for a slot held by a whole request
    assert all(r.ttft_s * 1000 <= TTFT_MS * 1.3 + 30 for r in records)


def test_non_streaming_ttft_equals_e2e(fake_server):
    result = bench(fake_server, stream=False, num_prompts=2)
    s = result.points[0].summary
    assert s.completed == 2 and s.itl is None
    assert s.ttft.p50 == pytest.approx(s.e2el.p50, abs=1.0)
    assert s.e2el.p50 >= E2E_MS


def test_completions_endpoint_is_timed_like_chat(fake_server):
    s = bench(fake_server, endpoint="completions", num_prompts=2).points[0].summary
    assert s.completed == 2 and s.ttft.p50 >= TTFT_MS and s.total_output_tokens == 2 * NUM_TOKENS


def test_duration_cap_stops_sending_new_requests(fake_server):
    s = bench(fake_server, num_prompts=50, duration_s=0.3).points[0].summary
    assert 1 <= s.num_requests <= 3 and s.failed == 0


def test_prometheus_metrics_are_scraped_before_and_after_each_point(fake_server):
    metrics_url = fake_server.url.removesuffix("/v1") + "/metrics"
    point = bench(fake_server, num_prompts=2, metrics_url=metrics_url).points[0]
    before, after = point.server_metrics["before"], point.server_metrics["after"]
    assert after['vllm:kv_cache_usage_perc{model_name="fake"}'] == 0.25
    counter = 'vllm:request_success_total{finished_reason="length"}'
    assert after[counter] - before[counter] == 2
    assert not any(k.startswith(("process_", "vllm:e2e_request_latency_seconds")) for k in after)


def test_an_unreachable_metrics_page_is_noted_not_fatal(fake_server):
    point = bench(fake_server, num_prompts=1, metrics_url=fake_server.url + "/no-such-page").points[0]
    assert point.summary.completed == 1
    assert "HTTP 404" in point.server_metrics["error"]
