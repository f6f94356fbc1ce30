"""Run jobs on a pool of worker threads; a job never runs twice at once.

In this process, a job has at most one run going (running, or waiting for a free worker) and
at most one more queued behind it: requests that come while one is queued (a cron slot and two
triggers at once) are merged into it. Across processes the job's lock in the state store
decides: a run refused because another process holds it is reported, not retried.

Each run has a `CancelToken`: `cancel_all` (the daemon stopping) sets them; `runner cancel` and
timeouts reach a run through its token too (`runner.streams.cancel`). Finished runs are
put on `finished` for the daemon's loop (triggers, retries), so that no decision is made on
a worker thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from runner import services
from runner.daemon.logs import DaemonLog
from runner.daemon.threads import Threads
from runner.definitions import secrets
from runner.errors import JobBusy, NotFound, RunnerError
from runner.history import files as history


@dataclass(frozen=True)
class Request:
    job: str  # namespace/name
    trigger: str  # why it runs: "cron 2026-…", "after a/b succeeded", "retry 2 of 3", …
    attempt: int = 1
    options: services.RunOptions = field(default_factory=services.RunOptions)
    run_id: str | None = None  # given when the caller must know it at once (the HTTP API)
    adhoc: dict[str, Any] | None = None  # an ad-hoc job's spec, run once without applying it


@dataclass(frozen=True)
class Finished:
    request: Request
    record: dict[str, Any] | None  # the run's history record; None when it did not run
    error: str | None = None  # why it did not run
    busy: bool = False  # another process was running the job
    gone: bool = False  # the job is no longer applied


def admit(
    request: Request,
    exclusive: bool,
    active: Mapping[str, object],
    queued: dict[str, Request],
    stopping: bool,
) -> str | None:
    """How a run request is kept when it cannot start now (called under the executor's lock):
    "merged" into the job's queued request (or dropped while stopping), "queued" behind the
    job's run going on, or "busy" when `exclusive`; None when it starts now."""
    if stopping:
        return "merged"
    if request.job in active:
        if exclusive:
            return "busy"
        if request.job in queued:
            return "merged"
        queued[request.job] = request
        return "queued"
    return None


def log_end(log: DaemonLog, outcome: Finished) -> None:
    """The daemon log's line for a run's end (or for a run that did not start), whichever
    executor ran it."""
    request, record = outcome.request, outcome.record
    if record is None:
        level = "info" if outcome.gone else "warning" if outcome.busy else "error"
        log(level, "run not started", job=request.job, trigger=request.trigger, error=outcome.error)
        return
    status = record["status"]
    log(
        "info" if status == "succeeded" else "warning" if status == "cancelled" else "error",
        f"run {status}",
        job=request.job,
        run=record["run_id"],
        seconds=record.get("seconds"),
        rows_written=record.get("rows_written"),
        error=record.get("error"),
    )


class Executor:
    def __init__(self, ws: services.Workspace, workers: int, log: DaemonLog, wake: threading.Event):
        self.ws = ws
        self.log = log
        self.wake = wake  # set when a run ends, so the daemon's loop handles it at once
        self.workers = workers
        self.finished: queue.Queue[Finished] = queue.Queue()
        self._pool = Threads(workers, "runner-worker")
        self.admission = services.Admission(ws)
        self._lock = threading.Lock()
        self._active: dict[str, services.CancelToken] = {}  # running or waiting for a worker
        self._queued: dict[str, Request] = {}  # one more run after the active one
        self._run_ids: dict[str, str] = {}
        self._waiting: dict[str, Request] = {}  # run id -> a request with an id, not begun yet
        self.stopping = False

    def start(self) -> None:
        """Called once the daemon leads (see `runner.daemon.election`): the worker threads are
        made now, not by the first slot's burst on the loop's thread (1.5 s for 500)."""
        self._pool.start()

    def submit(self, request: Request, exclusive: bool = False) -> str:
        """Start or queue a run: returns "started", "queued" or "merged"; with `exclusive`,
        "busy" instead of queueing behind a run going on."""
        return self.submit_many([request], exclusive)[0]

    def submit_many(self, requests: list[Request], exclusive: bool = False) -> list[str]:
        """`submit` each of `requests` (a cron slot's, hundreds at once): the jobs of those
        that start are read and locked together (`services.Admission`), then each begins on
        its own worker thread at once, so the last one starts as soon as the first."""
        outcomes: list[str] = []
        starting: list[tuple[Request, services.CancelToken]] = []
        with self._lock:
            for request in requests:
                kept = admit(request, exclusive, self._active, self._queued, self.stopping)
                outcomes.append(kept or "started")
                if kept is not None:
                    continue
                token = services.CancelToken()
                self._active[request.job] = token
                if request.run_id:
                    self._waiting[request.run_id] = request
                starting.append((request, token))
        # a burst: its locks in one transaction (a request with its own id or spec goes its own way)
        plain = [(r.job, t) for r, t in starting if r.run_id is None and r.adhoc is None]
        admitted: dict[str, services.Admitted] = {}
        try:
            if len(plain) > 1:
                admitted = self.admission.admit(plain[: self.workers])
        except Exception as exc:  # noqa: BLE001 - each run then reads and locks its job itself
            self.log("warning", "cannot admit the runs together", error=f"{type(exc).__name__}: {exc}")
        self._pool.submit_many([partial(self._run, r, t, admitted.get(r.job)) for r, t in starting])
        return outcomes

    def _run(
        self, request: Request, token: services.CancelToken, admitted: services.Admitted | None = None
    ) -> None:
        outcome = Finished(request, None, "the daemon is stopping")
        if request.run_id:  # a slot's hundreds of runs have none: they do not queue on the lock here
            with self._lock:
                self._waiting.pop(request.run_id, None)
        try:
            if not token.cancelled and not self.stopping:

                def started(run_id: str) -> None:
                    self._run_ids[request.job] = run_id
                    self.log("info", "run started", job=request.job, run=run_id, trigger=request.trigger)

                if request.adhoc is not None:
                    namespace, _, name = request.job.partition("/")
                    started(request.run_id or "")
                    record = services.run_adhoc(
                        self.ws,
                        name,
                        request.adhoc,
                        namespace,
                        request.options,
                        token,
                        request.trigger,
                        request.run_id,
                    )
                else:
                    handed, admitted = admitted, None  # the run releases its lock from here on
                    record = services.run(
                        self.ws,
                        request.job,
                        request.options,
                        cancel=token,
                        on_start=started,
                        trigger=request.trigger,
                        run_id=request.run_id,
                        admitted=handed,
                    )
                outcome = Finished(request, record)
        except JobBusy as exc:
            outcome = Finished(request, None, str(exc), busy=True)
        except NotFound as exc:  # deleted since it was asked for
            outcome = Finished(request, None, str(exc), gone=True)
        except RunnerError as exc:
            outcome = Finished(request, None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker must outlive any one run
            outcome = Finished(request, None, secrets.redact(f"{type(exc).__name__}: {exc}"))
        finally:
            if admitted is not None:  # never started (the daemon stopping): its lock goes
                self._release(request.job, admitted)
            if outcome.record is None and request.run_id:
                self._not_started(request, outcome.error or "it did not start")
            log_end(self.log, outcome)  # before a queued run of the job starts, so the log reads in order
            with self._lock:
                self._active.pop(request.job, None)
                self._run_ids.pop(request.job, None)
                queued = self._queued.pop(request.job, None)
            self.finished.put(outcome)
            self.wake.set()
            if queued is not None:
                self.submit(queued)

    def warm(self) -> None:
        """After an apply: the jobs read and parsed for the next burst (`services.Admission`)."""
        try:
            self.admission.warm()
        except Exception as exc:  # noqa: BLE001 - the store away for a while: the burst reads it
            self.log("warning", "cannot read the applied jobs ahead", error=f"{type(exc).__name__}: {exc}")

    def _release(self, job: str, admitted: services.Admitted) -> None:
        try:
            self.ws.store().locks.release(services.locks.job_lock(job), admitted.lock_id)
        except Exception as exc:  # noqa: BLE001 - its lease ends and the lock is taken over
            self.log("error", "cannot release a job's lock", job=job, error=f"{type(exc).__name__}: {exc}")

    def ending(self, job: str) -> bool:
        """Whether the job's run has written its final record and is only letting go (its
        notifications, its lock): a run asked for now waits for it rather than be refused."""
        with self._lock:
            run_id = self._run_ids.get(job) if job in self._active and job not in self._queued else None
        if not run_id:
            return False
        try:
            record = history.read_run(history.run_path(self.ws.history, *job.split("/", 1), run_id))
        except (OSError, ValueError):
            return False
        return record.get("status") not in ("queued", "running")

    def running(self) -> dict[str, str | None]:
        """Jobs running or waiting for a worker -> their run id once started."""
        with self._lock:
            return {job: self._run_ids.get(job) for job in self._active}

    def stop(self) -> None:
        """Start nothing new; runs going on go on."""
        with self._lock:
            self.stopping = True
            self._queued.clear()

    def cancel_all(self, reason: str) -> None:
        with self._lock:
            tokens = list(self._active.values())
        for token in tokens:
            token.cancel(reason)

    def cancel(self, job: str, reason: str) -> None:
        """Cancel the job's run going on here (at its next batch boundary), if any."""
        with self._lock:
            token = self._active.get(job)
        if token is not None:
            token.cancel(reason)

    def idle(self) -> bool:
        with self._lock:
            return not self._active

    def _not_started(self, request: Request, reason: str) -> None:
        """Say in an accepted run's record why it never started (its id was handed out)."""
        try:
            services.record_not_started(self.ws, request.job, request.run_id or "", reason)
        except OSError as exc:  # the history disk: the record reads `not_started` once we are gone
            self.log("error", "cannot record a run that did not start", run=request.run_id, error=str(exc))

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
        with self._lock:  # accepted, never given a worker: the daemon stopped first
            waiting, self._waiting = list(self._waiting.values()), {}
        for request in waiting:
            self._not_started(request, "the daemon stopped before a worker was free")
