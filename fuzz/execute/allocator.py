"""The C allocator's settings for running case after case in one process.

A case allocates its tensors, frees them all when it ends, and the next case allocates the same
sizes again. With glibc's defaults, an allocation of more than 128 KiB is first served by its
own `mmap` and the freed top of the heap is returned to the system past a threshold that follows
the largest such block; a case of a few MiB of tensors then gets fresh pages from the kernel
every time, each page faulted in and zeroed. Measured on `ops.rmsnorm` [64, 3072] BF16 (one
torch thread, 2-core CPU, `run_case` over a campaign's cases): 1,121 page faults and 4.4 ms
per case with glibc's defaults, none and 2.4 ms with the memory kept. `python -m
bench.overhead` reports the page faults per case of kfuzz and of the plain loop.

`keep_freed_memory` sets glibc's mmap threshold to its largest value (32 MiB: blocks up to it
come from the heap and are reused) and the trim threshold to 256 MiB (freed memory up to that
stays in the process). It changes nothing where the C library is not glibc, nor where the
user set either threshold through glibc's environment variables (`MALLOC_MMAP_THRESHOLD_`,
`MALLOC_TRIM_THRESHOLD_`): their settings stand. The process keeps up to 256 MiB of freed
memory for reuse instead of returning it at once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on a 64-bit system (DEFAULT_MMAP_THRESHOLD_MAX).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_done: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds as the module docstring says, once per process. Returns whether
    they are set (False off glibc, or where the user set them)."""
    global _done
    if _done is None:
        _done = _apply()
    return _done


def _apply() -> bool:
    if any(name in os.environ for name in USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl and macOS lack it)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; the trim threshold last, as setting either one stops
    # glibc from moving both with the blocks it sees.
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
