"""Giving the memory a burst of runs freed back to the system.

A cron slot of hundreds of jobs runs them at once, a thread each, and each thread's
allocations (SQLite's per-connection buffers, drivers' and Python's larger objects) come from
one of glibc's per-thread arenas. Once the runs end their memory is free, but glibc keeps
it in those arenas: a daemon that ran a slot of 500 jobs stays ~80 MB larger until the next
slot. `malloc_trim` hands the free pages of every arena back; the daemon calls it when its
runs have ended and no slot is near, as it collects their cycles (`Daemon._collect`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release() -> bool:
    """Return the free memory of every malloc arena to the system; False where the C library
    cannot (nothing is done then)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
