"""``engine/allocator.keep_large_buffers``: after it, a 64 MB array comes from the heap (the
``[heap]`` mapping grows past it) instead of a fresh mmap, so the next chunk reuses its pages;
``FHBENCH_MALLOC=default`` leaves glibc alone. Each case runs in a fresh interpreter, since the
setting is process-wide."""
import subprocess
import sys

import pytest

from benchmark.engine.allocator import keep_large_buffers

PROBE = """
import sys
from benchmark.engine.allocator import keep_large_buffers
import numpy as np

def heap_bytes():  # the kernel may list the heap as several adjacent [heap] mappings
    total = 0
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith("[heap]"):
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            total += hi - lo
    return total

print(keep_large_buffers())
before = heap_bytes()
block = np.ones(64 << 20, dtype=np.uint8)  # 64 MiB, above glibc's default mmap ceiling (32 MiB)
print(heap_bytes() - before >= 48 << 20)  # most of it: free heap space may hold the rest
"""

glibc_linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt on Linux")


def _probe(env_extra):
    import os

    env = {**os.environ, **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


@glibc_linux
def test_large_blocks_come_from_the_heap_once_set():
    assert _probe({"FHBENCH_MALLOC": ""}) == ["True", "True"]


@glibc_linux
def test_fhbench_malloc_default_leaves_glibc_alone():
    assert _probe({"FHBENCH_MALLOC": "default"}) == ["False", "False"]


def test_setting_twice_is_harmless():
    first = keep_large_buffers()
    assert keep_large_buffers() == first
