"""Large CPU buffers reused instead of mapped afresh for every chunk.

glibc's malloc serves a block above its mmap threshold (which adapts, but never past 32 MiB)
with fresh pages from the kernel and unmaps it on free. A chunk of 512 faces at 112x96 is a
66 MB float32 tensor, and each stage of the harness makes a few of them (the faces, the LR,
the upsampled input, the SR output, the luma planes), so on the CPU every chunk paid the page
faults and the kernel's zeroing again for each: measured by ``benchmarks/bench_pipeline.py``
(both harnesses gain; the README's Benchmarks gives the figures). Raising the threshold keeps
freed chunk buffers in the heap, where the next chunk's identical allocations reuse them; the
trim threshold is raised with it so the heap top is not handed back after every chunk.

The cost: the process keeps its peak heap (one chunk's working set) until it exits instead of
returning it between chunks. ``FHBENCH_MALLOC=default`` leaves glibc's settings alone; on
anything but glibc this does nothing. Results do not depend on it (allocation only).
"""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # the largest int: never hand the heap top back between chunks

_done = False


def keep_large_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds for this process, once; True if they were set."""
    global _done
    if _done:
        return True
    if os.environ.get("FHBENCH_MALLOC", "") == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        # the process's own symbols: glibc's mallopt without find_library, which runs ldconfig
        # in a subprocess on every fhbench start
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
