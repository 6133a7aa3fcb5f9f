"""When the Triton supervisor restarts Triton and when it gives up (serve.process.triton_supervisor): the backoff
policy and the hang clock, with explicit times. The supervisor on a real tritonserver runs in
tests/e2e/test_triton_supervision.py."""

from __future__ import annotations

from trtpipe.serve.process.triton_supervisor import HangClock, RestartPolicy


def test_backoff_doubles_from_half_a_second_and_the_fifth_failure_in_the_window_gives_up():
    policy = RestartPolicy()  # 5 failures within 300 s
    assert [policy.record_failure(t) for t in (0, 10, 20, 30, 40)] == [0.5, 1.0, 2.0, 4.0, None]


def test_failures_older_than_the_window_are_forgotten():
    policy = RestartPolicy(max_failures=3, window_s=60)
    assert policy.record_failure(0) == 0.5
    assert policy.record_failure(30) == 1.0
    assert policy.record_failure(70) == 1.0  # the one at 0 left the window: two within it
    assert policy.record_failure(89) is None  # 30, 70, 89: three within 60 s
    assert list(policy.failures) == [30, 70, 89]


def test_backoff_is_capped():
    policy = RestartPolicy(max_failures=100, window_s=1e9, max_backoff_s=30)
    delays = [policy.record_failure(t) for t in range(10)]
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_max_failures_one_never_restarts():
    assert RestartPolicy(max_failures=1).record_failure(0) is None


def test_a_triton_is_hung_after_timeout_s_of_unhealthy_verdicts_once_seen_healthy():
    clock = HangClock(timeout_s=5)
    clock.restart(0)
    assert not clock.hung(True, 1)
    assert not clock.hung(False, 2)  # unhealthy from 2
    assert not clock.hung(None, 4)  # no verdict: neither resets nor starts the count
    assert not clock.hung(False, 6.9)
    assert clock.hung(False, 7)


def test_a_healthy_verdict_resets_the_count():
    clock = HangClock(timeout_s=5)
    clock.restart(0)
    clock.hung(True, 0)
    assert not clock.hung(False, 1)
    assert not clock.hung(True, 5)
    assert not clock.hung(False, 6)
    assert not clock.hung(False, 10.9)
    assert clock.hung(False, 11)


def test_a_stale_unhealthy_verdict_just_after_a_restart_does_not_count_before_timeout_s():
    clock = HangClock(timeout_s=5)
    clock.restart(100)
    assert not clock.hung(False, 100.5)  # the frontend has not checked the new Triton yet
    assert not clock.hung(False, 104.9)
    assert not clock.hung(True, 105.5)  # its next check passed: healthy


def test_a_triton_never_seen_healthy_after_a_restart_is_hung_after_twice_the_timeout():
    clock = HangClock(timeout_s=5)
    clock.restart(100)
    assert not clock.hung(False, 105)  # the grace ends: counting starts
    assert not clock.hung(False, 109.9)
    assert clock.hung(False, 110)
