"""The executor's worker threads, each woken on its own.

A cron slot hands hundreds of runs over at once. With `ThreadPoolExecutor` its idle threads
wait on one shared queue, which wakes them one at a time: the next thread wakes only once the
one before it has taken its run, so the 500th run of a slot waited behind 499 hand-overs of the
interpreter, each behind the Python work of the runs already going (1.2 s for 500). Here each
idle thread waits on a queue of its own: the slot's runs wake their threads together, and a run
starts as soon as its thread gets the interpreter. Work given while no thread is idle waits,
in order, for the next thread to finish.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress


class _Worker:
    def __init__(self, pool: Threads, name: str):
        self.pool = pool
        self.inbox: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        while (work := self.inbox.get()) is not None:
            while work is not None:
                # the work reports its own failures (the executor's runs record them): the
                # thread outlives any one of them
                with suppress(BaseException):
                    work()
                work = self.pool._next(self)


class Threads:
    """Up to `count` threads running the callables given to `submit`, made as they are first
    needed, or all at once by `start`."""

    def __init__(self, count: int, name: str):
        self.count = count
        self.name = name
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._idle: list[_Worker] = []
        self._waiting: deque[Callable[[], object]] = deque()
        self._closed = False

    def start(self) -> None:
        """Make every thread now (a daemon's start), so that a slot's burst never waits for
        hundreds of threads to be made on the thread that hands it over."""
        with self._lock:
            while len(self._workers) < self.count and not self._closed:
                self._idle.append(self._made())

    def submit(self, work: Callable[[], object]) -> None:
        """Run `work` on an idle thread, a new one while there are fewer than `count`, or on
        the first thread to finish.

        Raises:
            RuntimeError: after `shutdown`.
        """
        self.submit_many([work])

    def submit_many(self, works: list[Callable[[], object]]) -> None:
        """`submit` each of `works` (a slot's runs): the threads are chosen first, then woken
        in one go, so the thread handing them over is not cut off by those it woke already.

        Raises:
            RuntimeError: after `shutdown`.
        """
        handed = []
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker threads are shut down")
            for work in works:
                if self._idle:
                    handed.append((self._idle.pop(), work))
                elif len(self._workers) < self.count:
                    handed.append((self._made(), work))
                else:
                    self._waiting.append(work)
            # put under the lock, so a `shutdown` meanwhile finds each handed run ahead of its
            # thread's signal to stop (a put never blocks)
            for worker, work in handed:
                worker.inbox.put(work)

    def _made(self) -> _Worker:
        """A new thread, started waiting (called under the lock)."""
        worker = _Worker(self, f"{self.name}_{len(self._workers)}")
        self._workers.append(worker)
        worker.thread.start()
        return worker

    def _next(self, worker: _Worker) -> Callable[[], object] | None:
        """A thread's next work once it finished one: the first waiting, else it waits idle."""
        with self._lock:
            if self._waiting:
                return self._waiting.popleft()
            if not self._closed:
                self._idle.append(worker)
            return None

    def shutdown(self, wait: bool = True) -> None:
        """Start nothing more (work still waiting for a thread is dropped); with `wait`,
        return once the work going on has ended."""
        with self._lock:
            self._closed = True
            self._waiting.clear()
            self._idle.clear()
            workers = list(self._workers)
        for worker in workers:  # read once its work is done, or at once by an idle thread
            worker.inbox.put(None)
        if wait:
            for worker in workers:
                if worker.thread is not threading.current_thread():
                    worker.thread.join()
