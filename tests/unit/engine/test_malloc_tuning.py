import ctypes
import ctypes.util
import sys

import pytest

from trtpipe.engine import malloc_tuning


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_engine_process_serves_step_sized_blocks_from_the_heap():
    assert malloc_tuning.keep_freed_memory_for_reuse() is True

    class MallInfo2(ctypes.Structure):  # glibc >= 2.33
        _fields_ = [(n, ctypes.c_size_t) for n in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                     "keepcost")]

    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = libc.mallinfo2().hblks  # blocks served by their own mmap
    p = libc.malloc(4 << 20)  # a step-sized temporary: 4 MB, far above glibc's default 128 kB threshold
    during = libc.mallinfo2().hblks
    libc.free(p)
    assert during == before


def test_a_platform_without_mallopt_changes_nothing(monkeypatch):
    monkeypatch.setattr(malloc_tuning.sys, "platform", "darwin")
    assert malloc_tuning._mallopt(malloc_tuning.M_MMAP_THRESHOLD, 1 << 20) is False
