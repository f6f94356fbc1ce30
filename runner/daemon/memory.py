"""Giving the memory a burst of runs freed back to the system.

A cron slot of hundreds of jobs runs them at once, a thread each, and each thread's
allocations (SQLite's per-connection buffers, drivers' and Python's larger objects) come from
one of glibc's per-thread arenas. Once the runs end their memory is free, but glibc keeps
it in those arenas: a daemon that ran a slot of 500 jobs stays ~80 MB larger until the next
slot. `malloc_trim` hands the free pages of every arena back; the daemon calls it when its
runs have ended and no slot is near, as it collects their cycles (`Daemon._collect`).

While a slot's runs are live, what each holds is the peak: `lean` (at the daemon's start)
makes that less. SQLite gives every connection a first block of page cache at once (~70 KB of
its ~100 KB), though a run's connection reads a few pages; without it the pages are allocated
as read. And the threads share two malloc arenas instead of one per thread up to 8 per core,
so what one run freed serves the next run of any thread, rather than staying in an arena of its
own. Measured on 500 runs at once: the peak a quarter lower (268 -> 201 MB), the runs' start
as before (bench/README.md, the daemon scenario).

What was left, and more than the rest, was glibc's per-thread cache (tcache): each thread
keeps up to 7 freed chunks of each size up to 1 KB for itself, out of reach of every other
thread and of `malloc_trim`, which releases only whole free pages. Over 500 threads those
cached chunks lie all over the heap, so the pages around them stay resident: after a slot the
daemon kept nearly all of the ~90 MB the slot had added, and the next slot's peak sat on top
of it. A run's thread gains nothing from its own cache here (its allocations are few next to
its waits), and glibc reads the cache's size only from the environment at a process's start:
`relaunch` starts the daemon's process again (the same process id, `exec`) with
`GLIBC_TUNABLES` turning it off, and `restore_environment` gives the relaunched process the
environment the user gave it, which the processes it starts inherit. Measured on 500 runs at
once (with reads that hold no connection while their task waits): the peak 180 -> 129 MB,
168 -> 119 MB between slots, the runs' start and CPU as before (bench/README.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None)
    except OSError:
        return None


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS)."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def _sqlite_library() -> ctypes.CDLL | None:
    """The SQLite library Python's `sqlite3` module runs on (searched through the module's own
    dependencies, so never another copy), or None where it does not export its API."""
    try:
        import _sqlite3

        library = ctypes.CDLL(_sqlite3.__file__)
        library.sqlite3_config  # noqa: B018 - exported?
    except (ImportError, OSError, AttributeError):
        return None
    return library


SQLITE_CONFIG_PAGECACHE = 7  # sqlite3.h
M_ARENA_MAX = -8  # malloc.h


def lean() -> list[str]:
    """Make each SQLite connection and each thread's allocations cost less memory (see the
    module's docstring); returns what it changed. For the start of a process: SQLite's
    configuration changes only while SQLite is shut down, which is safe only while it holds no
    memory at all (no connection or statement open), so it is left as it is otherwise."""
    done = []
    sqlite = _sqlite_library()
    if sqlite is not None:
        sqlite.sqlite3_memory_used.restype = ctypes.c_int64
        config = sqlite.sqlite3_config
        if sqlite.sqlite3_memory_used() == 0 and sqlite.sqlite3_shutdown() == 0:
            no_bulk = (ctypes.c_void_p(None), ctypes.c_int(0), ctypes.c_int(0))
            if config(SQLITE_CONFIG_PAGECACHE, *no_bulk) == 0:
                done.append("sqlite page cache")
            sqlite.sqlite3_initialize()  # as the module's import left it
    mallopt = getattr(_libc(), "mallopt", None)  # glibc's (musl has no arenas to bound)
    if mallopt is not None and mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(2)) == 1:
        done.append("malloc arenas")
    return done


def release() -> bool:
    """Return the free memory of every malloc arena to the system; False where the C library
    cannot (nothing is done then)."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


TUNABLES = "GLIBC_TUNABLES"
TCACHE = "glibc.malloc.tcache_count"  # glibc's tunable of the per-thread cache (glibc >= 2.26)
# in a relaunched process: the user's own GLIBC_TUNABLES ("": none), put back at once
KEPT = "RUNNER_KEPT_GLIBC_TUNABLES"


def relaunch_environment(environ: Mapping[str, str]) -> dict[str, str] | None:
    """The environment to start this process again in, with glibc's per-thread cache off (see
    the module's docstring); None where there is nothing to do: not glibc, the cache's size
    set already (by the user, or by `relaunch` before: never twice), or a process that was
    relaunched already."""
    if _libc() is None or getattr(_libc(), "gnu_get_libc_version", None) is None or KEPT in environ:
        return None
    tunables = environ.get(TUNABLES)
    if tunables is not None and TCACHE in tunables:
        return None
    env = dict(environ)
    env[KEPT] = tunables or ""
    env[TUNABLES] = f"{tunables}:{TCACHE}=0" if tunables else f"{TCACHE}=0"
    return env


def relaunch() -> None:
    """Replace this process (its id kept, `exec`) by the same command with glibc's per-thread
    cache off; return where there is nothing to do or the `exec` fails (the process goes on
    as it is). Only for the process's own command line (`sys.orig_argv`): never in a
    process that runs the CLI inside something else (a test)."""
    env = relaunch_environment(os.environ)
    if env is None or not sys.executable:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except (OSError, ValueError):  # ValueError: a NUL in the command line (then it never ran)
        return


def restore_environment(environ: MutableMapping[str, str] | None = None) -> bool:
    """In a relaunched process: `GLIBC_TUNABLES` as the user had it (glibc read it at the
    start already), so the processes it starts inherit the user's. Whether it was one."""
    environ = os.environ if environ is None else environ
    kept = environ.pop(KEPT, None)
    if kept is None:
        return False
    if not kept:
        environ.pop(TUNABLES, None)
    else:
        environ[TUNABLES] = kept
    return True
