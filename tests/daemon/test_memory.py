"""What a burst of runs freed goes back to the system once they have ended
(`runner.daemon.memory.release`, called by `Daemon._collect`)."""

from __future__ import annotations

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
