"""Helping another worker's run with its split copy (`changes.split`): a `runner worker`
asked through the broker takes the run's pending key ranges (`runner.changes.split`) and
writes what it does into that run's log, so `runner logs` shows every range wherever it ran.

A helper only helps the very run that asked, while it runs: the job's lease still held by
that run id, of the job's applied revision the run started with (an ad-hoc run's job is not
applied: its ranges run on its own threads). The helper stops at its next batch boundary
once the run is cancelled (`runner cancel` marks the job's lease) or ended.
"""

from __future__ import annotations

from collections.abc import Callable

from runner.changes import split
from runner.changes.split import RANGE_DONE
from runner.changes.task import COMMITTED, TRACEBACK
from runner.history import files as history
from runner.jobs.sync import help_split, sync_spec
from runner.runs.jobs import job_and_connections
from runner.state import locks
from runner.streams.cancel import CancelToken
from runner.workspace import Workspace


def help_run(ws: Workspace, ref: str, run_id: str, task: str) -> int:
    """Take the pending key ranges of `task` in the run `run_id` of job `ref` until none is
    left; returns how many this call ran (0: the run ended, or none was left)."""
    store = ws.store()
    if not _running(ws, ref, run_id):
        return 0
    job, spec, ends = job_and_connections(ws, ref)
    try:
        record = history.read_run(history.run_path(ws.history, job.namespace, job.name, run_id))
    except (OSError, ValueError):
        return 0
    if record.get("adhoc_spec") is not None or record.get("revision") != job.revision_id:
        return 0  # not the applied job the run runs
    log = history.RunLog(
        history.log_path(ws.history, job.namespace, job.name, run_id),
        level=spec.log_level,
        always=(COMMITTED, TRACEBACK, RANGE_DONE),
    )

    def stopped() -> str | None:
        held = store.locks.info(locks.job_lock(ref))
        if held is None or held.run_id != run_id:
            return "the run's end"
        return held.cancel_requested

    return help_split(
        sync_spec(spec, ref),
        ends,
        ws.root,
        store=store,
        namespace=job.namespace,
        job=job.name,
        run_id=run_id,
        task=task,
        log=log,
        cancel=CancelToken(stopped),
    )


def _running(ws: Workspace, ref: str, run_id: str) -> bool:
    held = ws.store().locks.info(locks.job_lock(ref))
    return held is not None and held.run_id == run_id and held.alive


def ask_help_with(ask: Callable[[str, str, str, int], None]) -> None:
    """How this process's runs ask the cluster's other workers to help with a split copy:
    `ask(job ref, run id, task, helpers)` (`runner worker` sends that many requests to the broker)."""
    split.ASK_HELP = ask
