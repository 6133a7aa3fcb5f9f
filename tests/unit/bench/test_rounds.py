"""Repeated rounds: compare judges the median round against the noise band the rounds show; ITL by arrival."""

import dataclasses

from tests.unit.bench.test_compare import make_result, run_compare, stats
from trtpipe.bench.compare import compare_results
from trtpipe.bench.results import RequestRecord


def with_rounds(itl_p50s: list[float]):
    """A result whose one point (c=1) ran len(itl_p50s) rounds with these ITL p50s (ms)."""
    result = make_result(concurrencies=(1,))
    point = result.points[0]
    rounds = [dataclasses.replace(point.summary, itl=stats(v)) for v in itl_p50s]
    if len(rounds) == 1:
        point.summary = rounds[0]  # one round is stored as the summary alone, as `bench run` stores it
    else:
        point.rounds = rounds
    return result


def itl_p50(comparison):
    [point] = comparison.points
    return next(d for d in point.deltas if d.metric.name == "itl_p50")


def test_rounds_of_one_unchanged_server_pass_where_single_rounds_would_not():
    old, new = with_rounds([4.0, 4.6, 3.8]), with_rounds([4.6, 3.9, 4.4])
    delta = itl_p50(compare_results(old, new))
    assert (delta.old, delta.new) == (4.0, 4.4)
    assert round(delta.noise, 3) == 0.2 and round(delta.limit, 3) == 1.3 and not delta.is_regression
    single = itl_p50(compare_results(with_rounds([4.0]), with_rounds([4.6])))  # the same values, one round each
    assert single.noise == 0 and single.is_regression


def test_a_slowed_engine_stands_out_of_the_noise_and_fails():
    delta = itl_p50(compare_results(with_rounds([4.0, 4.6, 3.8]), with_rounds([8.1, 8.4, 7.9])))
    assert delta.is_regression and round(delta.ratio, 3) == 2.025


def test_compare_shows_the_noise_band_and_says_when_there_is_none(tmp_path):
    result = run_compare(tmp_path, with_rounds([4.0, 4.6, 3.8]), with_rounds([4.6, 3.9, 4.4]))
    assert result.exit_code == 0 and "±20.0%" in result.output and "no noise band" not in result.output
    result = run_compare(tmp_path, make_result(), make_result())
    assert result.exit_code == 0 and "one round on a side: no noise band measured" in result.output


def record(times):
    return RequestRecord(request_id=0, scheduled_s=0.0, start_s=0.0, end_s=times[-1], chunk_times_s=times)


def test_chunks_that_arrived_in_one_burst_share_the_gap_instead_of_counting_as_zero():
    # Arrivals at 0.10 (1 chunk), 0.11 (1), 0.14 (a burst of 3, parsed 20 us apart), 0.15 (1).
    gaps = record([0.10, 0.11, 0.14, 0.14002, 0.14004, 0.15]).itl_s
    assert [round(g, 6) for g in gaps] == [0.01, 0.010013, 0.010013, 0.010013, 0.00996]
    assert round(sum(gaps), 6) == 0.05  # first arrival to last


def test_a_steady_stream_faster_than_the_window_keeps_its_mean_gap():
    times = [i * 0.0004 for i in range(26)]  # a token every 0.4 ms, for 10 ms
    gaps = record(times).itl_s
    assert round(sum(gaps) / len(gaps), 6) == 0.0004


def test_extra_chunks_in_the_first_read_add_no_gap():
    assert [round(g, 6) for g in record([0.10, 0.10, 0.12]).itl_s] == [0.02]
