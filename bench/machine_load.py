"""How busy the rest of the machine is, for benchmarks on shared cores.

A ratio between two points run back to back only means something if nothing else ran during them.
`wait_until_quiet` holds a measurement until the cores are idle; `ForeignLoad` reports how many cores
other processes used while it ran (machine busy time minus this process's own), so a caller can redo a
point that was disturbed instead of averaging the disturbance in. Linux only (/proc).
"""

from __future__ import annotations

import os
import time

TICKS = os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    v = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = v[3] + v[4]  # idle + iowait
    return (sum(v) - idle) / TICKS, sum(v) / TICKS


def process_cpu_s(pid: int | str = "self") -> float:
    """CPU seconds (user + system, every thread) a process has used so far."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def idle_fraction(window_s: float = 0.5) -> float:
    busy0, total0 = _machine_busy_s()
    time.sleep(window_s)
    busy1, total1 = _machine_busy_s()
    return 1.0 - (busy1 - busy0) / max(total1 - total0, 1e-9)


def wait_until_quiet(min_idle: float = 0.9, timeout_s: float = 300.0) -> bool:
    """Block until the machine is at least min_idle idle over half a second; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if idle_fraction() >= min_idle:
            return True
    return False


class ForeignLoad:
    """with ForeignLoad() as load: ...; load.cores = CPU cores other processes kept busy meanwhile."""

    def __enter__(self) -> ForeignLoad:
        self._busy0, self._own0, self._t0 = _machine_busy_s()[0], process_cpu_s(), time.monotonic()
        self.cores = 0.0
        return self

    def __exit__(self, *exc) -> None:
        foreign = (_machine_busy_s()[0] - self._busy0) - (process_cpu_s() - self._own0)
        self.cores = max(0.0, foreign) / max(time.monotonic() - self._t0, 1e-9)
