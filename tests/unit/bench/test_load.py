"""Load-shape functions, tested without sleeping."""

import numpy as np

from trtpipe.bench.load import poisson_arrival_times


def test_open_loop_arrivals_have_the_requested_mean_rate_with_a_fixed_seed():
    arrivals = poisson_arrival_times(20_000, rate=8.0, seed=(0, 1))
    gaps = np.diff(arrivals)
    assert arrivals[0] == 0.0 and np.all(gaps >= 0)
    assert abs(len(gaps) / arrivals[-1] - 8.0) / 8.0 < 0.03
    # Exponential gaps: standard deviation equals the mean.
    assert abs(gaps.std() / gaps.mean() - 1.0) < 0.05


def test_arrivals_are_a_pure_function_of_the_seed():
    assert np.array_equal(poisson_arrival_times(50, 4.0, 7), poisson_arrival_times(50, 4.0, 7))
    assert not np.array_equal(poisson_arrival_times(50, 4.0, 7), poisson_arrival_times(50, 4.0, 8))


def test_infinite_rate_sends_every_request_at_once():
    assert np.array_equal(poisson_arrival_times(5, float("inf")), np.zeros(5))
    assert poisson_arrival_times(0, 2.0).size == 0
