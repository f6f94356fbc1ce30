"""Stopping a run cleanly: at a batch boundary, never inside a batch.

A `CancelToken` is asked before every batch a task reads. It is set by the process running
the job (the daemon's cancel, a timeout, SIGTERM after the grace period) or by another process
through the state store (`runner cancel JOB` marks the job's lock, which `poll` reads at most
every `interval` seconds). Raising `Cancelled` there rolls back the batch in flight; what was
committed before stays, with its pointer or digests, so the next run resumes from it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from runner.errors import Cancelled


class CancelToken:
    def __init__(self, poll: Callable[[], str | None] | None = None, interval: float = 0.5):
        self._event = threading.Event()
        self.poll = poll  # who asked to cancel from outside, if anyone
        self._interval = interval
        self._polled = 0.0
        self.reason: str | None = None
        self.failed = False  # a timeout: the run counts as failed, not cancelled

    def cancel(self, reason: str, failed: bool = False) -> None:
        """Ask the run to stop at its next batch boundary; the first reason given is kept."""
        if self.reason is None:
            self.reason, self.failed = reason, failed
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if not self._event.is_set() and self.poll is not None:
            now = time.monotonic()
            if now - self._polled >= self._interval:
                self._polled = now
                by = self.poll()
                if by:
                    self.cancel(f"cancelled by {by}")
        return self._event.is_set()

    def check(self) -> None:
        """Raise `Cancelled` when the run was asked to stop."""
        if self.cancelled:
            raise Cancelled(self.reason or "cancelled")
