"""What a burst of runs freed goes back to the system once they have ended
(`runner.daemon.memory.release`, called by `Daemon._collect`)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading

import pytest

from runner.daemon import memory


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


GLIBC = sys.platform.startswith("linux") and memory.release()


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_memory_freed_by_threads_goes_back_to_the_system():
    kept: list[list[bytes]] = []
    pinned: list[bytes] = []

    def burst() -> None:  # what a run's thread does: many mid-sized buffers (C malloc, its arena)
        kept.append([bytes(2000) for _ in range(6_000)])
        pinned.append(bytes(2000))  # what outlives the run, above the rest: the arena cannot shrink

    threads = [threading.Thread(target=burst) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept.clear()  # the runs ended: all freed, but glibc keeps it in the threads' arenas
    freed = _rss_mb()
    assert freed > 150  # (else this test proves nothing)
    assert memory.release()
    assert _rss_mb() < freed - 100  # of the ~190 MB allocated


# `memory.lean` changes process-wide settings: each case runs in a process of its own
PROBE = """
import ctypes, json, sqlite3, sys, threading
from runner.daemon import memory

path, lean, opened_first = sys.argv[1], sys.argv[2] == "lean", sys.argv[3] == "opened"
first = sqlite3.connect(path) if opened_first else None
changed = memory.lean() if lean else []
sqlite = memory._sqlite_library()
sqlite.sqlite3_memory_used.restype = ctypes.c_int64
before = sqlite.sqlite3_memory_used()
connections = [sqlite3.connect(path) for _ in range(20)]
rows = [c.execute("SELECT count(*), sum(n) FROM t WHERE n < 10").fetchone() for c in connections]
per_connection = (sqlite.sqlite3_memory_used() - before) / len(connections)
kept, together = [], threading.Barrier(8)
def allocate():  # what a run's thread does: buffers from its malloc arena, live at once
    kept.append([bytes(2000) for _ in range(1000)])
    together.wait()  # (a thread that ended first would hand its arena to the next)
threads = [threading.Thread(target=allocate) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
memory._libc().malloc_stats()  # one "Arena N:" paragraph per arena, on stderr
print(json.dumps({"changed": changed, "per_connection": per_connection, "rows": rows}))
"""


def _probe(tmp_path, *args: str) -> tuple[dict, int]:
    path = tmp_path / "probe.db"
    if not path.exists():
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, note TEXT)")
            db.executemany("INSERT INTO t VALUES (?, ?)", [(n, "x" * 200) for n in range(20_000)])
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), *args], capture_output=True, text=True, check=True
    )
    arenas = sum(line.startswith("Arena ") for line in proc.stderr.splitlines())
    return json.loads(proc.stdout), arenas


@pytest.mark.skipif(not GLIBC, reason="malloc arenas are glibc's")
def test_lean_gives_each_sqlite_connection_and_thread_less_memory(tmp_path):
    plain, plain_arenas = _probe(tmp_path, "plain", "none")
    lean, lean_arenas = _probe(tmp_path, "lean", "none")
    assert lean["changed"] == ["sqlite page cache", "malloc arenas"]
    assert lean["rows"] == plain["rows"] == [[10, 45]] * 20  # the connections read as before
    # SQLite's first block of page cache per connection (~70 KB) is gone: pages come as read
    assert lean["per_connection"] < plain["per_connection"] * 0.5, (lean, plain)
    assert plain_arenas > 2 and lean_arenas <= 2, (plain_arenas, lean_arenas)


def test_lean_leaves_sqlite_alone_while_a_connection_is_open(tmp_path):
    """Shutting SQLite down under an open connection is undefined: `lean` must not."""
    lean, _ = _probe(tmp_path, "lean", "opened")
    assert "sqlite page cache" not in lean["changed"]
    assert lean["rows"] == [[10, 45]] * 20


def test_relaunch_environment_turns_the_thread_cache_off_once_keeping_the_users():
    if memory.relaunch_environment({}) is None:
        pytest.skip("not glibc")
    assert memory.relaunch_environment({"PATH": "/bin"}) == {
        "PATH": "/bin",
        memory.TUNABLES: "glibc.malloc.tcache_count=0",
        memory.KEPT: "",
    }
    own = {memory.TUNABLES: "glibc.malloc.mmap_threshold=131072"}
    assert memory.relaunch_environment(own) == {
        memory.TUNABLES: "glibc.malloc.mmap_threshold=131072:glibc.malloc.tcache_count=0",
        memory.KEPT: "glibc.malloc.mmap_threshold=131072",
    }
    # the user's own size of the cache stands; a relaunched process is never relaunched again
    assert memory.relaunch_environment({memory.TUNABLES: "glibc.malloc.tcache_count=3"}) is None
    assert memory.relaunch_environment(memory.relaunch_environment(own) or {}) is None


def test_restore_environment_gives_back_the_users_variable():
    relaunched = {memory.TUNABLES: "a=1:glibc.malloc.tcache_count=0", memory.KEPT: "a=1", "PATH": "/bin"}
    assert memory.restore_environment(relaunched)
    assert relaunched == {memory.TUNABLES: "a=1", "PATH": "/bin"}
    without = {memory.TUNABLES: "glibc.malloc.tcache_count=0", memory.KEPT: ""}
    assert memory.restore_environment(without)
    assert without == {}
    plain = {"PATH": "/bin"}
    assert not memory.restore_environment(plain)
    assert plain == {"PATH": "/bin"}


@pytest.mark.skipif(not GLIBC, reason="glibc's per-thread cache")
def test_the_daemon_runs_with_the_thread_cache_off(daemon_project):
    """`runner daemon` starts its process again (the same id) with glibc's per-thread cache off,
    the user's tunables kept beside it."""
    d = daemon_project.start(env={memory.TUNABLES: "glibc.malloc.mmap_threshold=131072"})
    started = d.wait_for(lambda e: e["event"] == "daemon started")
    assert started["pid"] == d.proc.pid  # replaced, not a child
    with open(f"/proc/{d.proc.pid}/environ", "rb") as f:  # as the process was started: the exec's
        initial = f.read().split(b"\0")
    # (glibc splits the variable's text in place where it parses it: at the colons)
    assert b"GLIBC_TUNABLES=glibc.malloc.mmap_threshold=131072" in initial
    assert b"glibc.malloc.tcache_count=0" in initial
    assert d.stop() == 0
