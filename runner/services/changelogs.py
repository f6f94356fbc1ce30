"""A reader job's change logs from a terminal: `runner changes JOB` lists them, `runner replay
RUN` applies one run's change log again into a table of a connection (the same upserts and
deletes a writer applies, in one transaction)."""

from __future__ import annotations

from typing import Any, cast

from runner.connectors import registry
from runner.connectors.base import MergeWriter
from runner.connectors.changelog_files import ChangeLogSpec, changes_of, columns_of
from runner.definitions.changelogs import READER_END
from runner.errors import InvalidValue, NotFound, TerminalError
from runner.runs.jobs import change_log_place
from runner.state.changelogs import ChangeLogFile
from runner.workspace import Workspace, find

REPLAY_BATCH = 10_000


def changes(ws: Workspace, ref: str) -> dict[str, Any]:
    """A job's change logs, each task's in order (what `runner changes` lists)."""
    job = find(ws, "Job", ref)
    files = ws.reader().changelogs.of_job(job.namespace, job.name)
    return {"job": job.ref, "change_logs": [f.as_dict() for f in files]}


def _files_of(ws: Workspace, run_id: str, task: str | None) -> list[ChangeLogFile]:
    files = ws.reader().changelogs.of_run(run_id)
    if not files:
        raise NotFound(f"run {run_id} kept no change log (not a reader's run, or removed by retention)")
    tasks = sorted({f.task for f in files})
    if task is None and len(tasks) > 1:
        raise InvalidValue(
            f"run {run_id} kept change logs of several tasks ({', '.join(tasks)}): give --task", "task"
        )
    chosen = [f for f in files if task is None or f.task == task]
    if not chosen:
        raise NotFound(f"run {run_id} kept no change log of task {task!r} (tasks: {', '.join(tasks)})")
    return chosen


def replay(ws: Workspace, run_id: str, into: str, task: str | None = None) -> dict[str, Any]:
    """Apply one run's change log (of `task`) to `into` (`CONNECTION/TABLE`, the connection
    named as a job names it): upserts merged by the change log's keys, deletes applied, in
    order, committed once at the end (the table is created when missing).

    Raises:
        NotFound: no such run's change log, or no such connection.
        InvalidValue: `into` is not CONNECTION/TABLE, or several tasks and no `task`.
        TerminalError: the connection's kind cannot merge rows into a table.
    """
    ref, sep, table = into.rpartition("/")
    if not sep or not ref or not table:
        raise InvalidValue(f"--into takes CONNECTION/TABLE, not {into!r}", "into")
    files = _files_of(ws, run_id, task)
    connection = find(ws, "Connection", ref)
    spec = connection.document["spec"]
    kind = registry.kind(spec.get("type", ""))
    if kind is None or not kind.capabilities.native_merge:
        raise TerminalError(
            f"connection {connection.ref} (type {spec.get('type')!r}) cannot merge rows into a table"
        )
    reader = find(ws, "Job", f"{files[0].namespace}/{files[0].job}")
    applied = {(o.namespace, o.name): o for o in ws.reader().objects.all("Connection")}
    end = {"type": READER_END, **change_log_place(ws, reader, applied)}
    folder = ChangeLogSpec.model_validate(end).open_folder(ws.root)
    counts = {"inserted": 0, "updated": 0, "deleted": 0, "rows": 0}
    try:
        columns, keys = columns_of(folder, files[0].file)
        target = registry.open_connector(connection.ref, spec, ws.root)
        try:
            with target.open_writer(table, columns, keys or None) as w:
                for entry in files:
                    applied_any = False
                    for batch in changes_of(folder, entry.file, REPLAY_BATCH, columns):
                        applied_any = True
                        indexed = [change for change in batch if change[1] <= entry.last_position]
                        _apply(cast(MergeWriter, w), indexed, columns, keys, counts)
                    if not applied_any:
                        raise TerminalError(f"{entry.file}: its columns differ from the run's first file's")
                w.commit()
        finally:
            target.close()
    finally:
        folder.close()
    return {
        "run_id": run_id,
        "task": files[0].task,
        "into": f"{connection.ref}/{table}",
        "files": [f.file for f in files],
        **counts,
    }


def _apply(w: MergeWriter, batch: list, columns: list, keys: list[str], counts: dict[str, int]) -> None:
    """A batch of (op, position, row) in order: each run of upserts merged (the last row of a
    key), each run of deletes applied by key."""
    at = [[c.name for c in columns].index(k) for k in keys]
    start = 0
    while start < len(batch):
        op, end = batch[start][0], start
        while end < len(batch) and batch[end][0] == op:
            end += 1
        rows = [row for _, _, row in batch[start:end]]
        counts["rows"] += len(rows)
        if op == "upsert" and not at:
            w.insert(rows)
            counts["inserted"] += len(rows)
        elif op == "upsert":
            w.stage(list({tuple(r[i] for i in at): r for r in rows}.values()))
            merged = w.merge()
            w.clear_stage()
            counts["inserted"] += merged.inserted
            counts["updated"] += merged.updated
        elif at:
            w.open_key_stage()
            w.stage_keys(list({tuple(r[i] for i in at): None for r in rows}))
            counts["deleted"] += w.delete_listed()
        start = end
