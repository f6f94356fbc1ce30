"""`runner worker`: a Celery worker that takes run requests from the broker and runs them with
the services the daemon's in-process executor uses (`services.run`): the same job lease, the
same history record and run log, the same cancellation through the state store.

A worker registers in the state store (`runner workers` lists it) and renews its heartbeat
every `HEARTBEAT_SECONDS`; what it runs now is read from the job leases it holds. It needs what
a daemon's run needs: the state store, the shared history folder, the definitions folder (for
`${file:}` secrets and event scripts) and the secrets' environment.
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from runner import services
from runner.daemon.celery_app import RANGE_TASK, TASK, Delivery, make_app, shown
from runner.daemon.celery_executor import from_message
from runner.daemon.logs import DaemonLog
from runner.definitions import secrets
from runner.errors import Cancelled, JobBusy, RunnerError, RunStarted


class RunWorker:
    def __init__(self, ws: services.Workspace, broker: str, queue: str, concurrency: int, log: DaemonLog):
        self.ws = ws
        self.broker = broker
        self.queue = queue
        self.concurrency = concurrency
        self.log = log
        self._stop = threading.Event()

    def run(self) -> int:
        """Serve run requests until SIGTERM/SIGINT (Celery's warm shutdown: runs going on finish)."""
        services.check_shared_history(self.ws)  # its runs must be where `runner history` reads
        info = services.register_worker(self.ws, self.concurrency, shown(self.broker))
        beat = threading.Thread(target=self._heartbeat, args=(info,), name="runner-worker-beat", daemon=True)
        beat.start()
        app = make_app(self.broker, self.queue)
        app.task(name=TASK, Request=Delivery)(self.execute)
        app.task(name=RANGE_TASK, Request=Delivery)(self.help)

        def ask(job: str, run_id: str, task: str, helpers: int) -> None:
            request = {"job": job, "run_id": run_id, "task": task}
            for _ in range(helpers):
                app.send_task(RANGE_TASK, kwargs={"request": request}, queue=self.queue)

        services.ask_help_with(ask)  # a split copy run here asks the other workers through the broker
        self.log(
            "info",
            "worker started",
            worker=info.name,
            broker=info.broker,
            queue=self.queue,
            concurrency=self.concurrency,
        )
        try:
            worker = app.Worker(
                hostname=f"runner-{os.getpid()}@{socket.gethostname()}",
                pool="threads",
                concurrency=self.concurrency,
                queues=[self.queue],
                loglevel="WARNING",
                without_mingle=True,
                without_gossip=True,
                quiet=True,
            )
            worker.start()
            code = worker.exitcode or 0
        finally:
            self._stop.set()
            try:
                services.unregister_worker(self.ws, info)
            except RunnerError as exc:
                self.log("error", "cannot unregister the worker", error=str(exc))
        self.log("info", "worker stopped")
        return code

    def _heartbeat(self, info: Any) -> None:
        while not self._stop.wait(services.locks.HEARTBEAT_SECONDS):
            try:
                services.worker_heartbeat(self.ws, info)
            except Exception as exc:  # noqa: BLE001 - the store away for a while: beat again
                self.log("error", "cannot renew the worker's heartbeat", error=f"{type(exc).__name__}: {exc}")

    def execute(self, request: dict[str, Any]) -> None:
        """Run one request (the body of the Celery task). Never raises: how the run ended is in
        its history record, which the scheduling daemon reads."""
        req = from_message(request)
        run_id = req.run_id or ""
        self.log("info", "run started", job=req.job, run=run_id, trigger=req.trigger)
        try:
            if req.adhoc is not None:
                namespace, _, name = req.job.partition("/")
                record = services.run_adhoc(
                    self.ws, name, req.adhoc, namespace, req.options, None, req.trigger, run_id, once=True
                )
            else:
                record = services.run(
                    self.ws, req.job, req.options, trigger=req.trigger, run_id=run_id, once=True
                )
            self.log(
                "info" if record["status"] == "succeeded" else "error",
                f"run {record['status']}",
                job=req.job,
                run=run_id,
                seconds=record.get("seconds"),
                rows_written=record.get("rows_written"),
                error=record.get("error"),
            )
        except RunStarted as exc:  # delivered again after a worker died: the daemon reruns a cut run
            self.log(
                "info", "request delivered again: not run twice", job=req.job, run=run_id, error=str(exc)
            )
        except JobBusy as exc:
            held = self.ws.store().locks.info(services.locks.job_lock(req.job))
            if held is not None and held.run_id == run_id:  # this very run, delivered twice
                self.log("info", "request delivered again: not run twice", job=req.job, run=run_id)
                return
            self._not_started(req.job, run_id, str(exc))
        except RunnerError as exc:
            self._not_started(req.job, run_id, str(exc))
        except Exception as exc:  # noqa: BLE001 - a worker must outlive any one run
            self._not_started(req.job, run_id, secrets.redact(f"{type(exc).__name__}: {exc}"))

    def help(self, request: dict[str, Any]) -> None:
        """Take key ranges of another run's split copy until none is left (the body of the
        Celery task `runner.ranges`). Never raises: a range's failure is recorded with it, for
        the run that asked."""
        job, run_id, task = request["job"], request["run_id"], request["task"]
        try:
            ran = services.help_run(self.ws, job, run_id, task)
        except Cancelled as exc:  # `runner cancel`, or the run ended: the range in flight rolled back
            self.log(
                "info", "stopped helping with a split copy", job=job, run=run_id, task=task, error=str(exc)
            )
            return
        except Exception as exc:  # noqa: BLE001 - a worker must outlive any one request
            error = secrets.redact(f"{type(exc).__name__}: {exc}")
            self.log("warning", "cannot help with a split copy", job=job, run=run_id, task=task, error=error)
            return
        if ran:
            self.log("info", "helped with a split copy", job=job, run=run_id, task=task, ranges=ran)

    def _not_started(self, job: str, run_id: str, reason: str) -> None:
        self.log("warning", "run not started", job=job, run=run_id, error=reason)
        try:
            services.record_not_started(self.ws, job, run_id, reason)
        except OSError as exc:
            self.log("error", "cannot record a run that did not start", run=run_id, error=str(exc))
