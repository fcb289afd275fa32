"""Keep freed CPU memory for reuse, so large tensors stop costing page faults.

glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh ``mmap``
and hands it back with ``munmap`` when freed. A CPU training step of the reference CNN at batch
128 allocates and frees activations of that size many times, so each step faults in ~1 GB of new
zeroed pages: on the 2-core machine this was a third of the step's time (kernel time, ~60k minor
faults per step). Taking every allocation from the heap and never trimming it makes later
allocations reuse the same pages. The numbers do not change (PyTorch aligns its CPU buffers
itself); the cost is that the process keeps up to 2 GiB of freed memory mapped, and the setting
holds for the rest of the process (it cannot be undone, so a later in-process job with
``malloc_reuse=false`` still reuses). Blocks above 64 MiB allocated on threads other than the
main one may still be mapped afresh.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to serve large blocks from the heap and never give it back.

    Returns:
        True where it took effect (Linux with glibc); False elsewhere (macOS, musl, Windows),
        where it is a no-op.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_MMAP_MAX, 0):
        return False
    # the largest trim threshold an int holds: up to 2 GiB freed at the heap's top stays mapped
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    return True
