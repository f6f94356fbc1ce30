"""The executor's worker threads (`runner.daemon.threads`): each piece of work runs once, never
more than `count` at a time, the rest in order as threads free up; a burst wakes its threads
together; shutdown drops what waits and waits for what runs."""

from __future__ import annotations

import threading
import time

import pytest

from runner.daemon.threads import Threads


def _until(done, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_work_beyond_the_threads_waits_in_order_and_each_runs_once():
    pool = Threads(2, "t")
    gate = threading.Event()
    order: list[int] = []
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def work(n: int) -> None:
        with lock:
            running[0] += 1
            running[1] = max(running)
        gate.wait(10)
        with lock:
            order.append(n)
            running[0] -= 1

    for n in range(6):
        pool.submit(lambda n=n: work(n))
    assert len(pool._workers) == 2  # made as needed, never more than `count`
    _until(lambda: running[0] == 2)  # both threads inside a work, the other four waiting
    gate.set()
    _until(lambda: len(order) == 6)
    pool.shutdown(wait=True)
    assert sorted(order) == list(range(6)) and running[1] == 2


def test_waiting_work_starts_in_the_order_given():
    pool = Threads(1, "t")
    order: list[int] = []
    for n in range(5):
        pool.submit(lambda n=n: order.append(n))
    _until(lambda: len(order) == 5)
    pool.shutdown(wait=True)
    assert order == [0, 1, 2, 3, 4]


def test_a_burst_wakes_every_idle_thread_at_once():
    pool = Threads(50, "t")
    pool.start()
    assert len(pool._workers) == 50 and len(pool._idle) == 50
    inside = threading.Barrier(50, timeout=10)  # broken unless all 50 run at the same time
    done: list[bool] = []
    for _ in range(50):
        pool.submit(lambda: done.append(inside.wait() >= 0))
    _until(lambda: len(done) == 50)
    pool.shutdown(wait=True)
    assert done == [True] * 50
    assert len(pool._workers) == 50  # no thread made by the burst


def test_a_failing_work_leaves_its_thread_working():
    pool = Threads(1, "t")
    ran: list[str] = []

    def fail() -> None:
        raise ValueError("boom")

    pool.submit(fail)
    pool.submit(lambda: ran.append("after"))
    _until(lambda: ran)
    pool.shutdown(wait=True)
    assert ran == ["after"]


def test_shutdown_drops_waiting_work_waits_for_running_and_refuses_more():
    pool = Threads(1, "t")
    started, release = threading.Event(), threading.Event()
    ran: list[str] = []

    def long() -> None:
        started.set()
        release.wait(10)
        ran.append("long")

    pool.submit(long)
    pool.submit(lambda: ran.append("waiting"))
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    begun = time.monotonic()
    pool.shutdown(wait=True)
    assert time.monotonic() - begun >= 0.15  # it waited for the run going on
    assert ran == ["long"]  # the waiting one never started
    assert not any(w.thread.is_alive() for w in pool._workers)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
