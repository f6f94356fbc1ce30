"""The daemon: one loop that reconciles the folders, fires due jobs and handles ended runs.

- Reconcile (`runner.daemon.reconcile`): on start and when the watched folders have settled,
  plan and apply exactly as `runner apply` does (a new revision). Invalid definitions are
  logged with file:line and nothing is applied: the last good state stays. A plan that
  deletes objects is applied only when the same deletions are still planned `settle` seconds
  later, so a file caught between two writes (an editor truncating then writing, a `git
  checkout`) never deletes a job.
- Schedule: cron slots (`runner.runs.schedule`); after downtime, a pause or a suspension, a
  missed run runs once. A run that a killed daemon left unfinished runs again once at start.
- Triggers: when a run ends, the jobs that follow it (`spec.after`) are submitted.
- Retries: a failed run is submitted again after the job's backoff, up to `retry.attempts`,
  when its failure is transient (a refused connection, a deadlock, a timeout); a terminal one
  (bad SQL, a missing table) would fail the same way again and is not retried.
- Continuous jobs (`runner.daemon.continuous`): one run of each kept going, started again
  after a failure with a backoff, stopped when the daemon stops, the job is suspended or
  changed, or scheduling is paused.
- Leases (`runner.state.locks`): a job's lock whose holder stopped renewing it (a worker or a
  `runner run` killed on any host) is taken over, its run recorded as interrupted, and the job
  runs again once, as at start.
- Election (`runner.daemon.election`): with `standby`, a second daemon on the same state store
  waits and takes over when the scheduler's lease ends; slots are claimed in the store before
  they fire, so none fires twice.
- Stop (SIGTERM/SIGINT): nothing new starts; runs going on get `grace` seconds to finish,
  then are cancelled at their next batch boundary; a second signal cancels them at once.

The loop wakes on a file change, a finished run, a due slot, or every `poll` seconds to read
the state store (applies made by CI, suspend/resume, pause/unpause from other processes).
"""

from __future__ import annotations

import datetime as dt
import gc
import heapq
import os
import queue
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runner import services
from runner.daemon import election, memory
from runner.daemon.continuous import TRIGGER as CONTINUOUS
from runner.daemon.continuous import Supervisor
from runner.daemon.executor import Executor, Finished, Request
from runner.daemon.logs import DaemonLog
from runner.daemon.reconcile import Reconciler
from runner.daemon.watch import FolderWatcher
from runner.definitions.jobs import Retry
from runner.definitions.load import resolve_reference
from runner.errors import (
    HistoryUnwritable,
    JobBusy,
    RunnerError,
    StateUnavailable,
)
from runner.history import files as history
from runner.runs.schedule import Cron, Due, Scheduler


def scheduled(trigger: str | None) -> bool:
    """Whether the daemon started a run on its own (not a person through the CLI or the API)."""
    return (trigger or "").startswith(("cron", "after", "retry", "catch-up", CONTINUOUS))


# runs at once, each on its own thread (most of a run waits on databases and files, not on a
# core); bounded because each run holds a connection to each of its ends (PostgreSQL allows 100
# by default): a cron slot of more jobs than this starts that many, the rest as threads free up
WORKERS = 32
ENDING_GRACE = 5.0  # seconds a run request waits for a run that has written its end to let go
# what other processes change (`runner apply`, suspend, pause) is read at most this often: the
# loop turns at every run's end, and a daemon of hundreds of jobs would read the store each time
REFRESH_SECONDS = 0.25
COLLECT_AHEAD = 5.0  # seconds before a slot within which `_collect` leaves the collector be
WHEN = {"succeeded": {"succeeded"}, "failed": {"failed"}, "finished": {"succeeded", "failed"}}


@dataclass
class DaemonOptions:
    workers: int = WORKERS
    debounce: float = 0.5  # seconds of quiet after a file event before reconciling
    settle: float = 2.0  # seconds a planned deletion must stay planned before it is applied
    grace: float = 30.0  # seconds running jobs get to finish on SIGTERM
    poll: float = 1.0  # seconds between reads of the state store
    watch: bool = True
    keep_runs: int | None = None  # history retention per job: the newest N runs ...
    keep_days: float | None = None  # ... or those of the last N days (the last run of each task stays)
    standby: bool = False  # another daemon schedules: wait and take over when its lease ends


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _check_writable(folder: Path) -> None:
    """Refuse to start when runs could not record themselves (history files and logs): too
    little free space, or a folder where a block of data cannot be written and synced (an
    empty file proves nothing on a full disk)."""
    history.check_space(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise HistoryUnwritable(f"the history folder {folder} is not writable: {exc.strerror}") from None


class Stoppable(Protocol):
    def stop(self) -> None: ...


class Daemon:
    def __init__(
        self,
        ws: services.Workspace,
        options: DaemonOptions | None = None,
        log: DaemonLog | None = None,
        http: Callable[[Daemon], Stoppable] | None = None,
        executor: Callable[[services.Workspace, int, DaemonLog, threading.Event], Executor] | None = None,
    ):
        """`http`, when given, starts the HTTP API over this daemon (it starts runs through
        `start_run`) and returns the server to stop: the CLI composes the two, so the daemon
        never imports the API. `executor` makes the executor (default: runs on this process's
        threads; `runner.daemon.celery_executor` hands them to workers)."""
        self.ws = ws
        self.http = http
        self.options = options or DaemonOptions()
        self.log = log or DaemonLog()
        self._stop = threading.Event()
        self._force = threading.Event()
        self._abandon = threading.Event()
        self._wake = threading.Event()
        self.executor = (executor or Executor)(ws, self.options.workers, self.log, self._wake)
        self.scheduler = Scheduler()
        self.continuous = Supervisor()
        self.watcher = (
            FolderWatcher(ws.root, self.options.debounce, self._wake) if self.options.watch else None
        )
        self._revision: int | None = -1
        self._refreshed = 0.0  # monotonic time of the last `_refresh`
        self.jobs: dict[str, dict[str, Any]] = {}  # ref -> applied spec
        self.followers: dict[str, dict[str, set[str]]] = {}  # upstream ref -> {job: statuses firing it}
        self.suspended: set[str] = set()
        self.paused = False
        self._retries: list[tuple[float, int, Request]] = []  # (monotonic due, seq, request)
        self._seq = 0
        self.reconcile = Reconciler(ws, self.options.settle, self.log)
        self._state_problem: str | None = None
        self._lost = threading.Event()  # the scheduler's lease was taken over: stop
        self._reaped = 0.0  # monotonic time of the last look for runs whose holder is gone
        self._litter = False  # runs ended since the last collection (see `_collect`)

    # --- lifecycle -----------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        """Signal handler: the first signal stops scheduling, a second cancels runs at once, a
        third stops waiting for them (a run cut there is like one killed: the next resumes)."""
        if self._force.is_set():
            self._abandon.set()
        if self._stop.is_set():
            self._force.set()
        self._stop.set()
        self._wake.set()

    @property
    def abandoned(self) -> bool:
        """A third signal came while runs were still going: they are cut, as by kill -9."""
        return self._abandon.is_set() and not self.executor.idle()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> int:
        store = self.ws.store(create=True)  # its first act is an apply: a new folder gets a store
        lock_id = election.lead(store, self.log, self.options.standby, self._stop, self._lease_lost)
        if lock_id is None:  # stopped while a standby
            self.executor.shutdown()
            self.log("info", "daemon stopped")
            return 0
        self.executor.start()
        http = None
        try:
            self.log(
                "info",
                "daemon started",
                folder=str(self.ws.root.resolve()),
                workers=self.executor.workers,
                pid=os.getpid(),
            )
            _check_writable(self.ws.history)
            marks = store.switches.schedule_marks()
            self.scheduler = Scheduler(
                {f"{ns}/{name}": dt.datetime.fromisoformat(slot) for (ns, name), (slot, _) in marks.items()},
                {f"{ns}/{name}": made_by for (ns, name), (_, made_by) in marks.items() if made_by},
            )
            if self.watcher:  # before the first reconcile: a change made meanwhile is seen
                self.watcher.start()
            self.reconcile()
            self._refresh()
            # what start-up loaded (modules, the applied jobs parsed) lives as long as the
            # daemon: the cycle collector need not walk it again in every full collection,
            # which a slot's hundreds of runs set off while the next of them wait to start
            gc.freeze()
            self._catch_up()
            for job in sorted(self.jobs):
                self._prune(job)
            if self.http is not None:
                http = self.http(self)
            while not self._stop.is_set():
                try:
                    if self.state_problem():
                        self._wake.wait(self.options.poll)
                        self._wake.clear()
                        continue
                    self._tick()
                    wait = self._sleep_seconds()
                except Exception as exc:  # noqa: BLE001 - the state store away for a while, a full disk: go on
                    self.log(
                        "error",
                        "the daemon's loop failed; trying again",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    wait = max(1.0, self.options.poll) * 5
                self._wake.wait(wait)
                self._wake.clear()
            self._shutdown()
        finally:
            if http is not None:
                http.stop()
            if self.watcher:
                self.watcher.stop()
            self.executor.shutdown(wait=not self._abandon.is_set())
            try:
                store.locks.release(services.locks.DAEMON, lock_id)
            except Exception as exc:  # noqa: BLE001 - a lock left here is taken over by the next daemon on this host
                self.log("error", "cannot release the daemon's lock", error=f"{type(exc).__name__}: {exc}")
        self.log("info", "daemon stopped")
        return 1 if self._lost.is_set() else 0

    def _lease_lost(self) -> None:
        """The heartbeat found the scheduler's lease taken over: another daemon schedules now."""
        self.log("error", "the daemon's lease was taken over by another daemon: stopping")
        self._lost.set()
        self.request_stop()

    def _shutdown(self) -> None:
        self.executor.stop()
        for job in sorted(self.continuous.running):  # they never end by themselves
            self._stop_continuous(job, "the daemon is stopping")
        running = self.executor.running()
        if running:
            self.log(
                "info", "stopping: waiting for runs to finish", jobs=sorted(running), grace=self.options.grace
            )
        deadline = time.monotonic() + self.options.grace
        while not self.executor.idle() and time.monotonic() < deadline and not self._force.is_set():
            self._force.wait(0.1)
            self._drain()
        if not self.executor.idle():
            self.log(
                "warning",
                "cancelling runs at their next batch boundary",
                jobs=sorted(self.executor.running()),
            )
            self.executor.cancel_all("cancelled: the daemon is stopping")
        while not self.executor.idle() and not self._abandon.is_set():
            self._abandon.wait(0.05)
        if self._abandon.is_set() and not self.executor.idle():
            self.log("warning", "exiting without waiting for runs", jobs=sorted(self.executor.running()))
        self._drain()

    # --- the loop ------------------------------------------------------------------------

    def state_problem(self) -> str | None:
        """What is wrong with the state store now (deleted, replaced, unreadable), logged when
        it starts and when it ends; while it lasts nothing is scheduled or started."""
        problem = self.ws.store().db.check()
        if problem != self._state_problem:
            if problem:
                self.log(
                    "error", "the state store cannot be used: no run starts until it is back", error=problem
                )
            else:
                self.log("info", "the state store is usable again")
            self._state_problem = problem
        return problem

    def _tick(self) -> None:
        changed = self.watcher is not None and self.watcher.settled()
        reconciled = changed or self.reconcile.due()
        if reconciled:
            self.reconcile()
        if reconciled or time.monotonic() - self._refreshed >= REFRESH_SECONDS:
            self._refresh()
        self._drain()
        self._reap()
        self._collect()
        if self.paused:
            return
        now = _utcnow()
        dues = self._claim(self.scheduler.due(now, self.suspended))
        self._mark(*((due.job, due.slot) for due in dues))
        self._submit(
            *(
                Request(
                    due.job,
                    f"cron {due.slot.isoformat()}"
                    + (f" ({due.missed} missed slots skipped)" if due.missed else ""),
                )
                for due in dues
            )
        )
        for request in self.continuous.due(time.monotonic(), self.executor.running(), self.suspended):
            if self.executor.submit(request, exclusive=True) == "started":
                self.continuous.running.add(request.job)
        while self._retries and self._retries[0][0] <= time.monotonic():
            _, _, request = heapq.heappop(self._retries)
            if request.job in self.suspended or request.job not in self.jobs:
                self.log("info", "retry dropped: the job is suspended or gone", job=request.job)
                continue
            self._submit(request)

    def _collect(self) -> None:
        """Once the runs have all ended and no slot is due for a while, collect the cycles
        they left (their connections, engines and errors: ~100,000 objects for a slot of 500
        runs). Left to itself, the collector walks them when the next slot's first runs
        allocate, stopping every thread for 0.3-0.4 s just as the slot's runs start. The
        memory they freed then goes back to the system (`memory.release`)."""
        if not self._litter or not self.executor.idle():
            return
        wake = None if self.paused else self.scheduler.next_wakeup(self.suspended)
        if wake is not None and (wake - _utcnow()).total_seconds() < COLLECT_AHEAD:
            return  # too close to the slot: the collector runs as it would have
        self._litter = False
        gc.collect()
        memory.release()

    def _sleep_seconds(self) -> float:
        waits = [self.options.poll]
        if not self.paused:
            wake = self.scheduler.next_wakeup(self.suspended)
            if wake is not None:
                waits.append((wake - _utcnow()).total_seconds())
            if self._retries:
                waits.append(self._retries[0][0] - time.monotonic())
            backoff = self.continuous.seconds_to_due(
                time.monotonic(), self.executor.running(), self.suspended
            )
            if backoff is not None:
                waits.append(backoff)
        if self.watcher and (settle := self.watcher.seconds_to_settle()) is not None:
            waits.append(settle)
        if (held := self.reconcile.seconds_to_due()) is not None:
            waits.append(held)
        return max(0.01, min(waits))

    def _submit(self, *requests: Request) -> None:
        """Start or queue runs, all at once (a cron slot's: see `Executor.submit_many`)."""
        new = {request.job for request in requests if request.attempt == 1}
        if new and self._retries:  # a new run of the job: a retry still waiting is not needed any more
            self._retries = [r for r in self._retries if r[2].job not in new]
            heapq.heapify(self._retries)
        for request, outcome in zip(requests, self.executor.submit_many(list(requests)), strict=True):
            if outcome != "started":
                self.log(
                    "info", f"run {outcome} behind the one going on", job=request.job, trigger=request.trigger
                )

    def _claim(self, dues: list[Due]) -> list[Due]:
        """The due slots this daemon may fire: each recorded as fired in the state store first,
        so a slot another daemon fired already (a scheduler that had not yet heard it lost its
        lease) is not fired again."""
        slots = [(*due.job.split("/", 1), due.slot.isoformat()) for due in dues]
        claimed = self.ws.store().cluster.claim_slots(slots, services.locks.holder())  # type: ignore[arg-type]
        for due, slot in zip(dues, slots, strict=True):
            if slot not in claimed:
                self.log("warning", "slot already fired by another daemon", job=due.job, slot=slot[2])
        return [due for due, slot in zip(dues, slots, strict=True) if slot in claimed]

    def _reap(self) -> None:
        """Every heartbeat: the runs whose holder is gone (a worker or a `runner run` killed on
        any host, its lease expired) are recorded as interrupted and run again once; fired
        slots older than a day are forgotten."""
        if time.monotonic() - self._reaped < services.locks.HEARTBEAT_SECONDS:
            return
        self._reaped = time.monotonic()
        store = self.ws.store()
        for lock in store.locks.stale():
            job = services.locks.job_of(lock.name)
            if job is None:
                continue
            interrupted: list[dict[str, Any] | None] = []
            if not store.locks.take_over(lock, self._interrupter(interrupted)):
                continue
            record = interrupted[0] if interrupted else None
            self.log(
                "warning",
                "a run's holder is gone: lease taken over",
                job=job,
                run=lock.run_id,
                holder=lock.holder,
            )
            ran = (record or {}).get("options", {})
            if record is None or ran.get("dry_run") or ran.get("limit") or job not in self.jobs:
                continue
            if job in self.suspended or self.paused:
                continue
            reason = f"catch-up: run {record['run_id']} was interrupted"
            self.log("info", "running once to catch up", job=job, reason=reason)
            self._submit(Request(job, reason, options=services.RunOptions(tasks=ran.get("tasks"))))
        store.cluster.forget_slots(_utcnow() - dt.timedelta(days=1))

    def _interrupter(self, into: list[dict[str, Any] | None]) -> Callable[[services.locks.Lock], None]:
        """What a take-over does with the lock taken: record its run as interrupted, into `into`."""
        return lambda stale: into.append(services.interrupt_holder(self.ws, stale))

    def _mark(self, *marks: tuple[str, dt.datetime]) -> None:
        """Record the cron slots (job, slot) fired or set, in one transaction."""
        self.ws.store().switches.set_schedule_marks(
            [(*job.split("/", 1), slot.isoformat(), self.scheduler.made_by.get(job)) for job, slot in marks]  # type: ignore[misc]
        )

    # --- runs asked for through the HTTP API ---------------------------------------------

    def start_run(
        self, job: str, options: services.RunOptions, trigger: str, adhoc: dict[str, Any] | None = None
    ) -> str:
        """Start a run now on a worker; returns its run id.

        Raises:
            JobBusy: the job is running (here or in another process).
            HistoryUnwritable: the run could not be recorded as queued.
            StateUnavailable: the state store is deleted, replaced or unreadable.
            RunnerError: the daemon is stopping.
        """
        problem = self.state_problem()
        if problem:
            raise StateUnavailable(f"{problem}; no run starts until it is back")
        # a client that saw the last run's record end may ask for the next one at once
        deadline = time.monotonic() + ENDING_GRACE
        while self.executor.ending(job) and time.monotonic() < deadline:
            time.sleep(0.02)
        held = self.ws.store().locks.info(services.locks.job_lock(job))
        if held is not None and held.alive:
            raise JobBusy(f"job {job} is already running ({held.holder}, run {held.run_id})")
        if self.executor.stopping:
            raise RunnerError("the daemon is stopping: no run starts now")
        run_id = history.new_run_id()
        services.record_queued(self.ws, job, run_id, trigger, options)  # the id resolves from now on
        outcome = self.executor.submit(Request(job, trigger, 1, options, run_id, adhoc), exclusive=True)
        if outcome != "started":  # the caller gets an error, not the id: no record is left
            history.run_path(self.ws.history, *job.split("/", 1), run_id).unlink(missing_ok=True)
        if outcome == "busy":
            raise JobBusy(f"job {job} is already running")
        if outcome != "started":
            raise RunnerError("the daemon is stopping: no run starts now")
        return run_id

    # --- state ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        """Read what other processes may have changed: applied jobs, suspensions, the pause."""
        self._refreshed = time.monotonic()
        store = self.ws.store()
        latest = store.objects.latest_revision()
        revision = latest.id if latest else None
        if revision != self._revision:
            self._revision = revision
            objects = store.objects.all("Job")
            self.jobs = {o.ref: o.document["spec"] for o in objects}
            keys = {(o.namespace, o.name) for o in objects}
            self.followers = {}
            for o in objects:
                for trigger in o.document["spec"].get("after", []):
                    upstream = resolve_reference(trigger["job"], o.namespace, keys)
                    if upstream is not None:  # a job named twice (as name and ns/name) follows once
                        key = f"{upstream[0]}/{upstream[1]}"
                        whens = self.followers.setdefault(key, {}).setdefault(o.ref, set())
                        whens |= WHEN[trigger.get("when", "succeeded")]
            crons = {
                ref: Cron.of(spec["schedule"]) for ref, spec in self.jobs.items() if spec.get("schedule")
            }
            for ref in sorted(self.continuous.set_jobs(self.jobs) & self.continuous.running):
                self._stop_continuous(ref, "its definition changed")
            self.executor.warm()
            fresh = self.scheduler.set_jobs(crons, _utcnow())
            self._mark(*((job, self.scheduler.marks[job]) for job in fresh))
            store.switches.forget_schedule_marks({tuple(ref.split("/", 1)) for ref in crons})  # type: ignore[misc]
        suspended = {f"{ns}/{name}" for ns, name in store.switches.suspended()}
        for job in sorted(suspended ^ self.suspended):
            self.log("info", "job suspended" if job in suspended else "job resumed", job=job)
        self.suspended = suspended
        paused = services.paused_info(self.ws)
        if paused["paused"] != self.paused:
            self.log(
                "info", "scheduling paused" if paused["paused"] else "scheduling resumed", by=paused.get("by")
            )
        self.paused = paused["paused"]
        for ref, why in self.continuous.held(self.suspended, self.paused):
            self._stop_continuous(ref, why)

    def _stop_continuous(self, job: str, why: str) -> None:
        """Cancel a continuous job's run at its next batch boundary (committed and acknowledged
        so far: nothing is lost)."""
        self.continuous.stop(job)
        self.log("info", "stopping a continuous run", job=job, reason=why)
        self.executor.cancel(job, f"cancelled: {why}")

    def _catch_up(self) -> None:
        """Once at start: a run a killed daemon left unfinished, and a cron slot missed while
        the daemon was down, each make one run (one per job, whatever the count)."""
        reasons: dict[str, str] = {}
        options: dict[str, services.RunOptions] = {}
        for ref in self.jobs:
            namespace, _, name = ref.partition("/")
            newest = services.recent_runs(self.ws, namespace, name, 1)
            if newest and newest[0].get("status") == "running":
                record = services.mark_interrupted(self.ws, newest[0])
                ran = (record or {}).get("options", {})
                continuous = ref in self.continuous.jobs  # it starts again as it is: no run to finish
                if record is not None and not (ran.get("dry_run") or ran.get("limit") or continuous):
                    # whoever started it (cron, a trigger, the API, `runner run`): it runs again,
                    # on the same tasks; a test run (dry run, --limit) changed nothing to finish
                    reasons[ref] = f"catch-up: run {record['run_id']} was interrupted"
                    options[ref] = services.RunOptions(tasks=ran.get("tasks"))
        if not self.paused:
            dues = self._claim(self.scheduler.due(_utcnow(), self.suspended))
            self._mark(*((due.job, due.slot) for due in dues))
            for due in dues:
                reasons.setdefault(due.job, f"catch-up: missed cron slot {due.slot.isoformat()}")
        catch_up = []
        for ref, reason in sorted(reasons.items()):
            if ref in self.suspended or self.paused:
                continue
            self.log("info", "running once to catch up", job=ref, reason=reason)
            catch_up.append(Request(ref, reason, options=options.get(ref, services.RunOptions())))
        self._submit(*catch_up)

    # --- ended runs ----------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            try:
                finished = self.executor.finished.get_nowait()
            except queue.Empty:
                return
            self._ended(finished)

    def _prune(self, job: str) -> None:
        """Apply the history retention (`keep_runs`, `keep_days`) to one job."""
        if self.options.keep_runs is None and self.options.keep_days is None:
            return
        namespace, _, name = job.partition("/")
        try:
            gone = services.prune_history(
                self.ws, namespace, name, self.options.keep_runs, self.options.keep_days
            )
        except (OSError, RunnerError) as exc:
            self.log("error", "cannot prune the history", job=job, error=str(exc))
            return
        if gone:
            self.log("info", "history pruned", job=job, runs=len(gone))

    def _ended(self, finished: Finished) -> None:
        self._litter = True
        request, record = finished.request, finished.record
        if request.trigger == CONTINUOUS:
            if record is not None:
                self._prune(request.job)
            status, ran = (record or {}).get("status"), (record or {}).get("seconds") or 0.0
            delay = self.continuous.ended(request.job, status, ran, time.monotonic())
            if delay and not self._stop.is_set():
                self.log(
                    "info", "continuous run starts again after a backoff", job=request.job, seconds=delay
                )
            return
        if record is None:
            return
        self._prune(request.job)
        status = record["status"]
        if self._stop.is_set() or request.adhoc is not None:
            return  # an ad-hoc run is not the applied job of its name: no retries, no triggers
        spec = self.jobs.get(request.job) if scheduled(request.trigger) else None  # a person's run: no retry
        retry = Retry.model_validate(spec["retry"]) if spec and spec.get("retry") else None
        if status == "failed" and retry and record.get("failure") == "terminal":
            self.log("info", "not retried: the failure is terminal", job=request.job, error=record["error"])
        elif status == "failed" and retry and request.attempt < retry.attempts:
            delay = retry.delay(request.attempt)
            attempt = request.attempt + 1
            self._seq += 1
            heapq.heappush(
                self._retries,
                (
                    time.monotonic() + delay,
                    self._seq,
                    Request(request.job, f"retry {attempt} of {retry.attempts}", attempt, request.options),
                ),
            )
            self.log("info", "retry scheduled", job=request.job, attempt=attempt, seconds=round(delay, 3))
            return
        if self.paused:
            return
        for job, statuses in sorted(self.followers.get(request.job, {}).items()):
            if status in statuses and job not in self.suspended:
                self._submit(Request(job, f"after {request.job} {status}"))
