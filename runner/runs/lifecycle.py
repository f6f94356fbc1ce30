"""A run from start to end, the same for the CLI, the API and the daemon: the job's lock
(one run of a job at a time, across processes), the timeout, cancellation, the history
record written before anything is touched and after it ends, and the failure class."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from runner.changes.split import RANGE_DONE
from runner.changes.task import COMMITTED, TRACEBACK, WINDOW_DONE, Progress, RunOptions, TaskResult
from runner.connectors import own_paths
from runner.definitions import secrets
from runner.definitions.jobs import JobSpec
from runner.definitions.load import DEFAULT_NAMESPACE, Document, PathKey, format_path, load_text
from runner.definitions.models import seconds
from runner.errors import (
    HistoryUnwritable,
    JobBusy,
    Location,
    LockTimeout,
    RunStarted,
    TerminalError,
)
from runner.history import files as history
from runner.history.records import QUEUED, RunRecord
from runner.jobs import types as job_types
from runner.jobs.sync import failure_class
from runner.runs.admission import Admitted, lost
from runner.runs.events import run_after, run_before
from runner.runs.index import index_run
from runner.runs.jobs import (
    ADHOC_FILE,
    adhoc_job,
    applied_ends,
    check_task_names,
    job_and_connections,
)
from runner.runs.records import interrupt_holder, new_record, task_dict, with_committed
from runner.state import locks
from runner.state.database import utcnow
from runner.state.objects import AppliedObject
from runner.streams.cancel import CancelToken
from runner.workspace import Workspace

# How long a run handed out by a scheduler (`once`) waits for the job's lock. The scheduler
# hands out a job's next run when the previous run's record says it ended, which that run
# writes just before it releases the lock: the next run, started at once on another worker,
# may find the lock still held for a moment. A run still going on (one started by hand) keeps
# it longer, and the handed-out run is then not started, as before.
HANDOVER_SECONDS = 10.0


def run(
    ws: Workspace,
    ref: str,
    options: RunOptions | None = None,
    progress: Progress | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
    cancel: CancelToken | None = None,
    on_start: Callable[[str], None] | None = None,
    trigger: str = "manual",
    run_id: str | None = None,
    once: bool = False,
    admitted: Admitted | None = None,
) -> RunRecord:
    """Run an applied job now and write its history file and run log; returns the history record.

    The run stops at its next batch boundary when `cancel` is set, when `runner cancel` asks
    (through the job's lock in the state store), or when the job's `timeout` passes.
    `on_start` gets the run id once the job's lock is held; `trigger` says in the history why
    the run started (manual, cron, a job trigger, a retry).

    With `once` (a request a worker took from a broker, which may deliver it again), a run id
    whose record says the run started already is refused with `RunStarted`, and the job's lock
    is waited for (`HANDOVER_SECONDS`). `admitted`: the job, read and locked already for this
    run (`runner.runs.admission`, a burst of runs).

    Raises:
        NotFound: the job (or a task named in `options.tasks`) is not applied.
        JobBusy: the job is running in another process.
        RunStarted: `once`, and the run `run_id` started already.
    """
    if admitted is not None:
        return _run_locked(
            ws,
            admitted.job,
            admitted.spec,
            admitted.ends,
            options,
            progress,
            on_log,
            cancel,
            on_start,
            trigger,
            admitted.run_id,
            lock_id=admitted.lock_id,
        )
    ws.store()  # a run writes to it: opened first, the job is read through it (no reader beside it)
    job, spec, ends = job_and_connections(ws, ref)
    return _run_locked(
        ws, job, spec, ends, options, progress, on_log, cancel, on_start, trigger, run_id, once
    )


def run_adhoc(
    ws: Workspace,
    name: str,
    spec: dict[str, Any],
    namespace: str = DEFAULT_NAMESPACE,
    options: RunOptions | None = None,
    cancel: CancelToken | None = None,
    trigger: str = "ad-hoc",
    run_id: str | None = None,
    once: bool = False,
) -> RunRecord:
    """Run a job spec once without applying it (DataZen's dynamic jobs): validated by the same
    models, on applied connections; its run is in the history under `namespace/name`, and it
    holds that name's lock, so it never runs beside an applied job of the same name.

    Raises:
        DefinitionsInvalid: the spec or its name is invalid (with the field of each problem).
        NotFound: a connection it names is not applied.
    """
    job, parsed, ends = adhoc_job(ws, name, spec, namespace)
    return _run_locked(ws, job, parsed, ends, options, None, None, cancel, None, trigger, run_id, once)


def _run_locked(
    ws: Workspace,
    job: AppliedObject,
    spec: JobSpec,
    ends: dict[str, tuple[str, dict[str, Any]]],
    options: RunOptions | None,
    progress: Progress | None,
    on_log: Callable[[dict[str, Any]], None] | None,
    cancel: CancelToken | None,
    on_start: Callable[[str], None] | None,
    trigger: str,
    run_id: str | None,
    once: bool = False,
    lock_id: str | None = None,
) -> RunRecord:
    """`lock_id`: the job's lock, taken already for `run_id` in a burst of runs
    (`runner.runs.admission`, which checked the history folder's space for them all)."""
    options = options or RunOptions()
    store = ws.store()
    try:
        check_task_names(spec, f"job {job.ref}", options.tasks)
        if lock_id is None:  # a burst's runs (`lock_id`) had the folder's space checked together
            history.check_space(ws.history)
    except BaseException:
        if lock_id is not None:
            store.locks.release(locks.job_lock(job.ref), lock_id)
        raise
    run_id = run_id or history.new_run_id()
    token = cancel or CancelToken()
    try:
        if lock_id is None:
            lock_id = store.locks.acquire(
                locks.job_lock(job.ref),
                timeout=HANDOVER_SECONDS if once else 0,
                run_id=run_id,
                # the lease was taken over (the store unreachable for a whole lease): another
                # process may run the job now, so this run stops at its next batch boundary
                on_lost=lost(token),
                on_takeover=lambda stale: interrupt_holder(ws, stale),
            )
    except LockTimeout:
        held = store.locks.info(locks.job_lock(job.ref))
        who = f"{held.holder} since {held.acquired_at}, lock id {held.lock_id}" if held else "another process"
        raise JobBusy(
            f"job {job.ref} is already running ({who}); if that process is gone, release its lock "
            f"with `runner force-unlock {held.lock_id if held else 'LOCK_ID'}`"
        ) from None
    if once and _started(ws, job, run_id):  # checked under the lock: no other delivery runs it now
        store.locks.release(locks.job_lock(job.ref), lock_id)
        raise RunStarted(f"run {run_id} of job {job.ref} started already: not run again")
    token.poll = lambda: store.locks.cancel_requested(lock_id)
    timer = None
    if spec.timeout is not None:
        limit = seconds(spec.timeout)
        timer = threading.Timer(limit, token.cancel, (f"timed out after {spec.timeout}",), {"failed": True})
        timer.daemon = True
        timer.start()
    try:
        if on_start:
            on_start(run_id)
        return _execute(ws, job, spec, ends, run_id, options, progress, on_log, token, trigger)
    finally:
        if timer is not None:
            timer.cancel()
        store.locks.release(locks.job_lock(job.ref), lock_id)


def _started(ws: Workspace, job: AppliedObject, run_id: str) -> bool:
    """Whether the run's record says it started (anything but queued, or no record yet)."""
    try:
        record = history.read_run(history.run_path(ws.history, job.namespace, job.name, run_id))
    except (OSError, ValueError):
        return False
    return record.get("status") != QUEUED


def _execute(
    ws: Workspace,
    job: AppliedObject,
    spec: JobSpec,
    ends: dict[str, tuple[str, dict[str, Any]]],
    run_id: str,
    options: RunOptions,
    progress: Progress | None,
    on_log: Callable[[dict[str, Any]], None] | None,
    cancel: CancelToken,
    trigger: str,
) -> RunRecord:
    own_paths.guard(*ws.own_paths())  # no task writes a file there
    path = history.run_path(ws.history, job.namespace, job.name, run_id)
    try:  # made by the job's first run: its index is complete from the start
        first = history.make_folder(path.parent)
    except OSError as exc:
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written: {exc.strerror}"
        ) from None
    log = history.RunLog(
        history.log_path(ws.history, job.namespace, job.name, run_id),
        on_log,
        level=spec.log_level,
        # what the history reads back, where an error was, which worker committed which range
        always=(COMMITTED, WINDOW_DONE, TRACEBACK, RANGE_DONE),
        folder_made=True,
    )
    record = new_record(
        run_id,
        job.namespace,
        job.name,
        options,
        trigger,
        "running",
        started_at=utcnow(),
        revision=job.revision_id,
        source=ends["source"][0],
        target=ends["target"][0],
        **({"adhoc_spec": job.document["spec"]} if job.file == ADHOC_FILE else {}),  # what it ran, for audit
        log=str(log.path),
    )
    try:  # nothing is touched yet: a history that cannot take the run refuses it now
        spare = history.reserve(path)
    except OSError as exc:
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written: {exc.strerror}"
        ) from None
    try:
        history.write_atomic(path, record)
        index_run(ws, record, first)
    except OSError as exc:
        spare.unlink(missing_ok=True)
        raise HistoryUnwritable(
            f"the history folder {ws.history} cannot be written: {exc.strerror}"
        ) from None
    log("info", "run started", job=job.ref, revision=job.revision_id, trigger=trigger, **record["options"])
    started = dt.datetime.now(dt.UTC)
    done: dict[str, TaskResult] = {}
    writing = threading.Lock()  # tasks may end in parallel threads

    def on_task(result: TaskResult) -> None:
        with writing:
            done[result.name] = result
            record["tasks"] = [task_dict(r, options.dry_run) for r in done.values()]
            with suppress(OSError):  # a full disk: the final record, written into the reserve, has it
                history.write_atomic(path, record)

    inactive = set(spec.inactive_tasks())
    planned = [name for name in options.tasks or spec.task_names() if name not in inactive]
    stopped = run_before(spec, ends, ws.root, record, planned, log, cancel)
    try:
        results = (
            []
            if stopped
            else job_types.JOB_TYPES.get(spec.type).run(
                spec,
                ends,
                ws.root,
                store=ws.store(),
                namespace=job.namespace,
                job=job.name,
                run_id=run_id,
                options=options,
                log=log,
                on_task=on_task,
                progress=progress,
                cancel=cancel,
                locate=_locator(ws, job),
            )
        )
    except BaseException as exc:  # the record must never stay "running" for a run that ended
        interrupted = isinstance(exc, KeyboardInterrupt)
        error = "interrupted" if interrupted else secrets.redact(f"{type(exc).__name__}: {exc}")
        record.update(with_committed(record))
        record.update(status="cancelled" if interrupted else "failed", error=error, finished_at=utcnow())
        if not interrupted:
            record["failure"] = failure_class(exc)
            with suppress(Exception):  # the run's own error says more
                run_after(spec, ends, ws.root, record, planned, log)
        with suppress(HistoryUnwritable):  # the run's own error says more
            _write_final(ws, path, record, spare, log)
        log("warning" if interrupted else "error", f"run ended: {error}")
        if not interrupted:
            with suppress(Exception):
                _notify(ws, job, spec, path, record, log)
        raise
    failed = [r for r in results if r.status == "failed"]
    cancelled = any(r.status == "cancelled" for r in results)
    if cancelled:
        status = "failed" if cancel.failed else "cancelled"
        error = "; ".join([f"task {r.name}: {r.error}" for r in failed] + [cancel.reason or "cancelled"])
    else:
        status = "failed" if failed else "succeeded"
        error = "; ".join(f"task {r.name}: {r.error}" for r in failed) or None
    # a run's failure is terminal when any task's is (a retry would fail that task again); a
    # timeout is transient (the next run may be quicker)
    classes = {r.failure for r in failed}
    failure = None if status != "failed" else "terminal" if "terminal" in classes else "transient"
    if stopped:  # a before-event failed, or was stopped by a cancel: no task ran
        status, (error, failure) = "failed", stopped
        if cancel.reason is not None and not cancel.failed:
            status, failure = "cancelled", None
    would_write = sum(r.rows_written for r in results)
    record.update(
        status=status,
        finished_at=utcnow(),
        seconds=round((dt.datetime.now(dt.UTC) - started).total_seconds(), 3),
        rows_read=sum(r.rows_read for r in results),
        rows_written=0 if options.dry_run else would_write,
        **({"rows_would_write": would_write} if options.dry_run else {}),
        tasks=[task_dict(r, options.dry_run) for r in results],
        failed_tasks=[r.name for r in failed],
        error=error,
        failure=failure,
    )
    run_after(spec, ends, ws.root, record, planned, log)
    _write_final(ws, path, record, spare, log)
    level = {"succeeded": "info", "cancelled": "warning"}.get(status, "error")
    log(level, f"run {status}", seconds=record["seconds"], error=error)
    _notify(ws, job, spec, path, record, log)
    record["path"] = str(path)
    return record


def _notify(
    ws: Workspace, job: AppliedObject, spec: JobSpec, path: Path, record: RunRecord, log: history.RunLog
) -> None:
    """Send the run's notifications once its record says how it ended, then add what became
    of them to the record (a record that cannot take them still has its end; the log has them)."""
    if not spec.notify:
        return
    from runner.runs.notify import send_all  # urllib, email, smtplib: only for a job that notifies

    connections = {(o.namespace, o.name): o.document["spec"] for o in ws.store().objects.all("Connection")}
    record["notifications"] = send_all(spec, record, connections, ws.root, log)
    if record["notifications"]:
        with suppress(OSError):
            history.write_atomic(path, record)


def _write_final(ws: Workspace, path: Path, record: RunRecord, spare: Path, log: history.RunLog) -> None:
    """Write a run's last record into the space its reserve held (a run that filled the disk
    still says how it ended and what it committed), and say whether its log lost lines.

    Raises:
        HistoryUnwritable: even so, the record could not be written.
    """
    if log.error:
        record["log_error"] = log.error
    spare.unlink(missing_ok=True)
    try:
        history.write_atomic(path, record)
    except OSError as exc:
        index_run(ws, record)  # the index at least says how it ended
        raise HistoryUnwritable(
            f"run {record['run_id']} {record['status']} ({record['rows_written']} rows written), but "
            f"its record {path} could not be written: {exc.strerror}"
        ) from None
    index_run(ws, record)


def _locator(ws: Workspace, job: AppliedObject) -> Callable[[PathKey], Location]:
    """Where a field of the applied job is defined: its own line while the job's file still
    holds the definition that was applied, else the line the definition started on. The file
    is read only when an error needs it."""
    found: list[Document | None] = []

    def document() -> Document | None:
        if not found:
            docs: list[Document] = []
            if job.file != ADHOC_FILE:
                with suppress(OSError, UnicodeDecodeError):
                    docs, _ = load_text((ws.root / job.file).read_text(encoding="utf-8"), job.file)
            ends = applied_ends(ws, job)
            found.append(next((d for d in docs if _same_job(d, job, ends)), None))
        return found[0]

    def locate(path: PathKey) -> Location:
        doc = document()
        if doc is not None:
            return doc.locate(path)
        return Location(job.file, job.line, field=format_path(path))

    return locate


def _same_job(doc: Document, job: AppliedObject, ends: dict[str, str]) -> bool:
    data, meta = doc.data, doc.data.get("metadata")
    if data.get("kind") != "Job" or not isinstance(meta, dict) or meta.get("name") != job.name:
        return False
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return False
    try:
        parsed = job_types.parse(spec, ends)
    except (ValidationError, TerminalError):  # invalid now, or of a type this runner lacks
        return False
    return parsed.model_dump(mode="json", exclude_unset=True) == job.document["spec"]
