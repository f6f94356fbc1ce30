"""The executor of `runner daemon --executor celery`: runs go to `runner worker` processes
through a broker (RabbitMQ or Redis) instead of this process's threads.

The daemon keeps what the in-process executor keeps (a job has one run going and at most one
more queued behind it; finished runs go on `finished` for triggers and retries), but a run's
end comes back through the state store, not a thread: each request handed out is recorded in
the store (`run_requests`) with its run id, and a thread reads the runs index for those ids
every `POLL_SECONDS`. Since the requests and the runs are in the store, a daemon that takes
over as scheduler (`runner.daemon.election`) follows the runs its predecessor handed out, and
stopping the daemon neither waits for nor cancels runs: they belong to the workers.

A broker away (restarted, unreachable) loses no run: a request it refuses stays recorded and
is published again every `RETRY_SECONDS` until it takes it, and a request it took but that has
not started `RESEND_SECONDS` later (a broker restarted without keeping its queue) is published
again; a request delivered twice runs once (`services.run`'s `once`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runner import services
from runner.daemon.celery_app import REDELIVER_SECONDS, TASK, make_app, shown
from runner.daemon.executor import Finished, Request, admit, log_end
from runner.daemon.logs import DaemonLog
from runner.definitions import secrets
from runner.errors import NotFound, NotRunning
from runner.history import files as history

POLL_SECONDS = 0.25  # how often the ends of the runs handed out are read from the store
RETRY_SECONDS = 2.0  # how often a request the broker refused (it is away) is published again
# a request published but not started after this long is published again: a broker restarted
# without keeping its queue (Redis without persistence) lost it; a second delivery is dropped
# by the run's `once` check, so the run still runs once
RESEND_SECONDS = 2 * REDELIVER_SECONDS
SENDERS = 8  # threads recording and publishing requests: a slot of hundreds of jobs goes out at once
UNFINISHED = ("queued", "running")


def to_message(request: Request, run_id: str) -> dict[str, Any]:
    """A run request as JSON for the broker (and the store)."""
    return {
        "run_id": run_id,
        "job": request.job,
        "trigger": request.trigger,
        "attempt": request.attempt,
        "options": dataclasses.asdict(request.options),
        "adhoc": request.adhoc,
    }


def from_message(message: dict[str, Any]) -> Request:
    return Request(
        message["job"],
        message["trigger"],
        message.get("attempt", 1),
        services.RunOptions(**message.get("options", {})),
        message["run_id"],
        message.get("adhoc"),
    )


class CeleryExecutor:
    """Same surface as `runner.daemon.executor.Executor`, over Celery."""

    def __init__(
        self,
        ws: services.Workspace,
        log: DaemonLog,
        wake: threading.Event,
        broker: str,
        queue_name: str,
    ):
        self.ws = ws
        self.log = log
        self.wake = wake
        self.workers = 0  # runs go to the workers; this process runs none
        self.broker = shown(broker)
        self.queue = queue_name
        self.app = make_app(broker, queue_name)
        self.finished: queue.Queue[Finished] = queue.Queue()
        self._lock = threading.Lock()
        self._active: dict[str, str] = {}  # job -> run id of the request handed out
        self._requests: dict[str, Request] = {}  # run id -> request, until its run ended
        self._started: set[str] = set()  # run ids seen running (logged once)
        self._queued: dict[str, Request] = {}  # one more run after the active one
        self._unsent: dict[str, dict[str, Any]] = {}  # run id -> request the broker refused
        self._sent_at: dict[str, float] = {}  # run id -> when it was last published (monotonic)
        self._retried = 0.0
        self.stopping = False
        services.check_shared_history(ws)  # before anything is handed out
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="runner-celery-poll", daemon=True)
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="runner-celery-send")

    def start(self) -> None:
        """Once this daemon leads: follow the requests a previous scheduler handed out and that
        have not ended, and read the ends of runs from now on. (A standby must not: it would
        take the ends of the scheduler's runs, and fire their triggers again on taking over.)"""
        inherited = self.ws.store().cluster.requests()
        for run_id, (job, message) in inherited.items():
            with self._lock:
                self._active[job] = run_id
                self._requests[run_id] = from_message(message)
        # a request not started yet may never have reached the broker (its scheduler died
        # between recording and publishing it): published again; a second delivery of one
        # that did is refused by the run's `once` check, so none runs twice
        statuses = self.ws.store().runs.statuses(list(inherited))
        for run_id, (_, message) in inherited.items():
            if statuses.get(run_id) in (None, "queued"):
                self._senders.submit(self._publish, message, "run sent to the workers again")
        self._thread.start()

    def _publish(self, message: dict[str, Any], sent: str) -> bool:
        """Publish a request; one the broker refuses is kept to be published again
        (`RETRY_SECONDS`) until it takes it. True when published."""
        run_id = message["run_id"]
        try:
            self.app.send_task(TASK, kwargs={"request": message}, queue=self.queue)
        except Exception as exc:  # noqa: BLE001 - the broker away: published again once it is back
            with self._lock:
                first = run_id not in self._unsent
                if run_id in self._requests:
                    self._unsent[run_id] = message
            if first:
                error = secrets.redact(f"{type(exc).__name__}: {exc}")
                self.log(
                    "warning",
                    "run not sent to the workers yet: the broker is away, sent again once it is back",
                    job=message["job"],
                    run=run_id,
                    error=error,
                )
            return False
        with self._lock:
            self._unsent.pop(run_id, None)
            self._sent_at[run_id] = time.monotonic()
        self.log("info", sent, job=message["job"], run=run_id, trigger=message["trigger"])
        return True

    def submit(self, request: Request, exclusive: bool = False) -> str:
        """Hand a run to the workers or queue it: "started", "queued" or "merged"; with
        `exclusive`, "busy" instead of queueing behind a run going on."""
        with self._lock:
            kept = admit(request, exclusive, self._active, self._queued, self.stopping)
            if kept is not None:
                return kept
            run_id = request.run_id or history.new_run_id()
            self._active[request.job] = run_id
            self._requests[run_id] = dataclasses.replace(request, run_id=run_id)
        self._senders.submit(self._send, request, run_id)
        return "started"

    def warm(self) -> None:
        """Nothing to read ahead: the workers read each job as they run it."""

    def submit_many(self, requests: list[Request], exclusive: bool = False) -> list[str]:
        """`submit` each: a worker takes each run from the broker on its own."""
        return [self.submit(request, exclusive) for request in requests]

    def _send(self, request: Request, run_id: str) -> None:
        """Record the request (queued, in the history and the store) and publish it; on a
        sender thread, so that a slot firing hundreds of jobs does not wait for each in turn."""
        try:
            self._record_and_publish(request, run_id)
        except Exception as exc:  # noqa: BLE001 - the history or the store away: the run does not start
            error = secrets.redact(f"{type(exc).__name__}: {exc}")
            self.log("error", "run not sent to the workers", job=request.job, error=error)
            with contextlib.suppress(Exception):
                services.record_not_started(self.ws, request.job, run_id, f"not sent to the workers: {error}")

    def _record_and_publish(self, request: Request, run_id: str) -> None:
        if request.run_id is None:  # the API recorded its own request as queued already
            services.record_queued(self.ws, request.job, run_id, request.trigger, request.options)
        message = to_message(request, run_id)
        self.ws.store().cluster.add_request(run_id, request.job, message)
        self._publish(message, "run sent to the workers")

    # --- ends, read from the state store ---------------------------------------------------

    def _poll(self) -> None:
        while not self._halt.wait(POLL_SECONDS):
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - the store away for a while: look again
                self.log(
                    "error", "cannot read the runs handed to workers", error=f"{type(exc).__name__}: {exc}"
                )

    def check(self) -> None:
        """Put the runs that ended since the last look on `finished`; publish again the
        requests the broker refused or lost."""
        with self._lock:
            pending = dict(self._requests)
        statuses = self.ws.store().runs.statuses(list(pending))
        self._resend(statuses)
        for run_id, status in statuses.items():
            request = pending[run_id]
            if status == "running" and run_id not in self._started:
                self._started.add(run_id)
                self.log("info", "run started on a worker", job=request.job, run=run_id)
            if status in UNFINISHED:
                continue
            self._end(request, run_id, status)

    def _resend(self, statuses: dict[str, str]) -> None:
        now = time.monotonic()
        with self._lock:
            unsent = list(self._unsent.values()) if now - self._retried >= RETRY_SECONDS else []
            lost = [
                to_message(self._requests[run_id], run_id)
                for run_id, at in self._sent_at.items()
                if now - at >= RESEND_SECONDS
                and statuses.get(run_id) == "queued"
                and run_id in self._requests
            ]
        if unsent:
            self._retried = now
        for message in unsent:
            if not self._publish(message, "run sent to the workers: the broker is back"):
                break  # still away: the others wait for the next try
        for message in lost:
            self._publish(message, f"run sent again: not started {RESEND_SECONDS:.0f} s after it was sent")

    def _end(self, request: Request, run_id: str, status: str) -> None:
        namespace, _, name = request.job.partition("/")
        try:
            record: dict[str, Any] | None = history.read_run(
                history.run_path(self.ws.history, namespace, name, run_id)
            )
        except (OSError, ValueError):
            record = None
        if status == "not_started" or record is None:
            error = (record or {}).get("error") or "it did not start"
            outcome = Finished(request, None, error, busy="already running" in error)
        else:
            outcome = Finished(request, record)
        self.ws.store().cluster.end_request(run_id)
        log_end(self.log, outcome)
        with self._lock:
            self._requests.pop(run_id, None)
            self._unsent.pop(run_id, None)
            self._sent_at.pop(run_id, None)
            self._started.discard(run_id)
            if self._active.get(request.job) == run_id:
                del self._active[request.job]
            queued = self._queued.pop(request.job, None)
        self.finished.put(outcome)
        self.wake.set()
        if queued is not None:
            self.submit(queued)

    # --- what the daemon's loop asks -------------------------------------------------------

    def ending(self, job: str) -> bool:
        """Whether the job's run has written its final record and only its end is not read yet."""
        with self._lock:
            run_id = self._active.get(job) if job not in self._queued else None
        if not run_id:
            return False
        return self.ws.store().runs.statuses([run_id]).get(run_id) not in (None, *UNFINISHED)

    def running(self) -> dict[str, str | None]:
        with self._lock:
            return dict(self._active)

    def stop(self) -> None:
        """Hand out nothing new; runs on workers go on (a scheduler taking over follows them)."""
        with self._lock:
            self.stopping = True
            self._queued.clear()

    def cancel_all(self, reason: str) -> None:
        """Runs on workers are not this daemon's to cancel when it stops (`runner cancel` is)."""

    def cancel(self, job: str, reason: str) -> None:
        """Cancel the job's run on whichever worker holds it (a continuous job's, when the
        daemon stops it), through its lease as `runner cancel` does."""
        with self._lock:
            if job not in self._active:
                return
        with contextlib.suppress(NotFound, NotRunning):  # not started yet, or already ended
            services.cancel(self.ws, job, by=f"the scheduler ({reason})")

    def idle(self) -> bool:
        with self._lock:
            return self.stopping or not self._active

    def shutdown(self, wait: bool = True) -> None:
        self._senders.shutdown(wait=wait)
        self._halt.set()
        if wait and self._thread.is_alive():
            self._thread.join(timeout=5)
