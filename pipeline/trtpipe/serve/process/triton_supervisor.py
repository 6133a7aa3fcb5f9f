"""Keeps the Triton that `serve` started running: restarts it when it dies or hangs, gives up when it keeps failing.

- **Dead** (killed, crashed, exited): seen within POLL_S of its exit, from its exit status (read without reaping,
  see process_group.py). Streams in flight already broke with it: each ended with an SSE error event and
  `[DONE]` (engine_client raises EngineUnreachable, api/response.py sends the error).
- **Hung** (stopped, deadlocked, a stuck engine loop): the frontend's own health check (engine_client/replicas.py:
  ServerLive, then a one-token canary generation, each given --health-timeout, every 2 s while unhealthy) has
  found Triton unhealthy for `hang_timeout_s` on end. So a hung Triton is restarted at most
  2 s + health timeout + hang timeout after it stops answering (2 + 10 + 20 = 32 s by default). Its streams
  end with the error event when it is killed.
- **Restart**: the server's whole process group is killed with SIGKILL and reaped (the stubs of its Python
  backend included), then Triton starts again on the same ports, appending to the same log, after a backoff
  (RestartPolicy). Readiness returns once the frontend's next health check passes (gRPC reconnects by itself).
- **Giving up**: the `max_failures`-th failure within WINDOW_S (a death, a hang, or a restart that did not come
  up) stops the frontend, and `serve` exits 5 (errors.MachineError) with a message that names the count, the window, the last
  failure and the log. A server that cannot stay up is then visible to whatever runs `serve` (Kubernetes,
  systemd), instead of being restarted here forever.

The watcher runs in a thread of the serve process, whichever frontend runs (one process, or API-server workers).
Replicas given with --triton are not ours: not supervised.
NOTE: the thread lives as long as the Triton it started: tritonserver is started with PR_SET_PDEATHSIG, which
Linux ties to the *thread* that forked it, so a restarted Triton gets SIGTERM when its starting thread ends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from trtpipe.errors import TritonStartError, tail
from trtpipe.serve.process.launcher import TritonServer
from trtpipe.serve.process.process_group import describe_exit

log = logging.getLogger("trtpipe.serve")
POLL_S = 0.2
WINDOW_S = 300.0
DEFAULT_MAX_FAILURES = 5
DEFAULT_HANG_TIMEOUT_S = 20.0
START_TIMEOUT_S = 120.0


@dataclass
class RestartPolicy:
    """How long to wait before each restart, and when to stop restarting.

    Failures within the last `window_s` count. The k-th of them is followed by a restart after
    first_backoff_s * 2**(k-1) (capped at max_backoff_s), so a crash loop slows down while a rare failure is
    repaired at once; the `max_failures`-th is not restarted at all."""

    max_failures: int = DEFAULT_MAX_FAILURES
    window_s: float = WINDOW_S
    first_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    failures: deque = field(default_factory=deque)

    def record_failure(self, now: float) -> float | None:
        """A failure at `now`: the seconds to wait before restarting, or None to give up."""
        self.failures.append(now)
        while now - self.failures[0] >= self.window_s:
            self.failures.popleft()
        if len(self.failures) >= self.max_failures:
            return None
        return min(self.max_backoff_s, self.first_backoff_s * 2 ** (len(self.failures) - 1))


class HangClock:
    """When a running Triton counts as hung: the frontend's verdict has been "unhealthy" for `timeout_s` on end.

    The verdict is True (healthy), False (unhealthy) or None (not known yet: no check has finished). Just
    after a (re)start the frontend may still hold the verdict it reached before (it checks again every few
    seconds), so an unhealthy verdict counts only once the frontend has seen this Triton healthy, or, if it
    never does, from `timeout_s` after the start."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.started_at = 0.0
        self.seen_healthy = False
        self.unhealthy_since: float | None = None

    def restart(self, now: float) -> None:
        self.started_at, self.seen_healthy, self.unhealthy_since = now, False, None

    def hung(self, verdict: bool | None, now: float) -> bool:
        if verdict is True:
            self.seen_healthy, self.unhealthy_since = True, None
            return False
        if verdict is None or (not self.seen_healthy and now < self.started_at + self.timeout_s):
            return False
        if self.unhealthy_since is None:
            self.unhealthy_since = now
        return now - self.unhealthy_since >= self.timeout_s


def replica_verdict(frontend) -> bool | None:
    """The frontend's health verdict on its (only) Triton: True, False, or None before its first check."""
    return frontend.pool.replicas[0].healthy


class TritonSupervisor:
    """Watches `triton` in a thread (a context manager: started on enter, stopped and joined on exit).

    `health`: the frontend's verdict (replica_verdict, or the API-server workers' combined one).
    `on_restarted(triton)`: after each restart (the server record's new pid). `on_give_up()`: stop the frontend;
    `failure` then holds the error for serve to raise. `ports_free()`: raises when a port was taken meanwhile."""

    def __init__(self, triton: TritonServer, policy: RestartPolicy, health: Callable[[], bool | None],
                 hang_timeout_s: float = DEFAULT_HANG_TIMEOUT_S, *, on_restarted: Callable = lambda triton: None,
                 on_give_up: Callable[[], None] = lambda: None, ports_free: Callable[[], None] = lambda: None,
                 start_timeout_s: float = START_TIMEOUT_S, clock: Callable[[], float] = time.monotonic):
        self.triton, self.policy, self.health = triton, policy, health
        self.hang = HangClock(hang_timeout_s)
        self.on_restarted, self.on_give_up, self.ports_free = on_restarted, on_give_up, ports_free
        self.start_timeout_s, self.clock = start_timeout_s, clock
        self.failure: TritonStartError | None = None
        self.num_restarts = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)

    def __enter__(self) -> "TritonSupervisor":
        self.hang.restart(self.clock())
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        self._thread.join()

    def _watch(self) -> None:
        try:
            while not self._stopping.wait(POLL_S):
                why = self._why_restart()
                if why is not None and not self._recover(why):
                    return
        except Exception as e:  # noqa: BLE001 - a bug here must stop serve loudly, not leave Triton unwatched
            log.exception("the Triton supervisor failed")
            self.failure = TritonStartError(f"the Triton supervisor failed: {e!r}", fix="report this bug")
            self.on_give_up()

    def _why_restart(self) -> str | None:
        pid = self.triton.process.pid
        code = self.triton.exit_code()
        if code is not None:
            return f"tritonserver (pid {pid}) {describe_exit(code)}"
        if self.hang.hung(self.health(), self.clock()):
            return (f"tritonserver (pid {pid}) failed the frontend's health check for {self.hang.timeout_s:g} s "
                    "on end (it does not answer, or its canary generation does not finish): hung")
        return None

    def _recover(self, why: str) -> bool:
        """Kill, back off, restart, until Triton is ready again (True), or serve gives up or stops (False)."""
        while True:
            failed_at = self.clock()
            self.triton.kill()
            delay = self.policy.record_failure(failed_at)
            if delay is None:
                self._give_up(why)
                return False
            log.warning("%s; restarting it in %.1f s (failure %d of %d allowed within %.0f s; log: %s)", why, delay,
                        len(self.policy.failures), self.policy.max_failures, self.policy.window_s,
                        self.triton.log_path)
            if self._stopping.wait(delay):
                return False
            try:
                self.ports_free()
                self.triton.start(self.start_timeout_s, cancelled=self._stopping.is_set, why=f"restart after: {why}")
            except TritonStartError as e:
                if self._stopping.is_set():
                    return False
                why = f"tritonserver did not come back: {e.what.splitlines()[0]}"
                continue
            self.num_restarts += 1
            self.hang.restart(self.clock())
            log.warning("tritonserver restarted (pid %d), %.1f s after the failure", self.triton.process.pid,
                        self.clock() - failed_at)
            self.on_restarted(self.triton)
            return True

    def _give_up(self, why: str) -> None:
        p = self.policy
        try:
            last_lines = tail(self.triton.log_path.read_text(errors="replace"), 20)
        except OSError:
            last_lines = "(no log)"
        self.failure = TritonStartError(
            f"tritonserver failed {len(p.failures)} times within {p.window_s:.0f} s, the most serve tolerates "
            f"(--triton-max-failures {p.max_failures}); the last failure: {why}. serve stopped instead of "
            f"restarting it again.\n--- last lines of {self.triton.log_path} ---\n{last_lines}",
            fix="read Triton's log for why it fails (a model that does not load, memory, a GPU error); "
                "then start serve again")
        log.error("tritonserver failed %d times within %.0f s: giving up (%s)", len(p.failures), p.window_s, why)
        self.on_give_up()
