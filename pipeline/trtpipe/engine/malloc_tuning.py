"""glibc malloc settings for a process that runs the engine: freed step temporaries stay mapped for the next step.

Every forward allocates the same large temporaries again (gathered K/V, (rows, vocab) logits, activations:
hundreds of kB to a few MB each). glibc serves blocks above its mmap threshold (128 kB at start) with a fresh
mmap and returns them to the kernel on free, and trims the heap top above 128 kB, so each step page-faults
those megabytes back in, zero-filled, one 4 kB page at a time. Measured on the stories15M-shaped bench (16
concurrent decodes, one thread): 21% of a step's CPU time, most of it in the K/V gather. Serving those sizes
from the heap and keeping freed memory there removes the faults; what the process keeps is bounded by what it
used at its peak a moment ago.

Process-wide, on glibc only (elsewhere, or if glibc refuses, nothing changes), and idempotent.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit hosts
TRIM_THRESHOLD_BYTES = 256 << 20

_applied: bool | None = None


def keep_freed_memory_for_reuse() -> bool:
    """Raise glibc's mmap and trim thresholds once; True if they are in force."""
    global _applied
    if _applied is None:
        _applied = _mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and _mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return _applied


def _mallopt(param: int, value: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(param, value) == 1
