"""The reader and writer steps of a sync job: their ends that are not connections (a reader's
change logs, a writer's reader job), opened for a run, and a reader's retention after it.

Retention (`change_log.keep_days`, `keep_files`) never removes a change log that an applied
writer of the reader has not applied yet (a writer that never ran needs them all), nor a task's
newest file (it carries the task's change numbering on). Files of the reader's folder that the
index does not list (a run killed between the rename and the index, a partial file) are removed
too: the job's lock is held, so no run of it is writing them. The folder may be on an FTP or
SFTP server (`runner.connectors.changelog_folder`): the same, over its connection."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.changes.task import Log
from runner.connectors import registry
from runner.connectors.base import Connector
from runner.definitions.changelogs import READER_END, WRITER_END, ChangeLogRead, reader_task
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.load import DEFAULT_NAMESPACE
from runner.state.store import StateStore

if TYPE_CHECKING:
    from runner.connectors.changelog_folder import ChangeLogFolder
    from runner.state.changelogs import ChangeLogFile

OpenEnd = Callable[[str, dict[str, Any], Path], Connector]


def opener(spec: SyncJobSpec, store: StateStore, job: str, run_id: str) -> OpenEnd:
    """What opens a run's ends: a connection through its kind, a reader's change logs and a
    writer's reader job here (they need the state store's index)."""

    def open_end(ref: str, end: dict[str, Any], base_dir: Path) -> Connector:
        kind = end.get("type")
        if kind not in (READER_END, WRITER_END):
            return registry.open_connector(ref, end, base_dir)
        # the change logs' connectors (Parquet, FTP/SFTP folders): imported by a job that has them
        from runner.connectors.changelog_files import ChangeLogSource, ChangeLogSpec, ChangeLogTarget

        if kind == READER_END:
            return ChangeLogTarget(ref, ChangeLogSpec.model_validate(end), base_dir, store)
        namespace, _, name = str(end["job"]).partition("/")
        reader = store.objects.get("Job", namespace, name).document["spec"]
        tasks = {t.read.table: t.name for t in spec.tasks if isinstance(t.read, ChangeLogRead)}
        return ChangeLogSource(
            ref, ChangeLogSpec.model_validate(end), base_dir, store, job, reader["tasks"], tasks, run_id
        )

    return open_end


def _resolve(ref: str, namespace: str) -> list[tuple[str, str]]:
    """The (namespace, name) a job reference may mean, in the order they are looked for."""
    if "/" in ref:
        ns, _, name = ref.partition("/")
        return [(ns, name)]
    return [(namespace, ref), (DEFAULT_NAMESPACE, ref)]


def writer_positions(store: StateStore, reader: str, reader_tasks: list[dict[str, Any]]) -> dict[str, int]:
    """For each task of `reader`: the lowest position its applied writers have applied (0 for
    a writer that has not applied any); a task no writer applies is left out."""
    from runner.connectors.changelog_files import writer_position

    namespace, _, name = reader.partition("/")
    jobs = store.objects.all("Job")
    applied = {(o.namespace, o.name) for o in jobs}
    lowest: dict[str, int] = {}
    for obj in jobs:
        source = obj.document["spec"].get("source")
        if not isinstance(source, dict) or not isinstance(source.get("job"), str):
            continue
        found = next((k for k in _resolve(source["job"], obj.namespace) if k in applied), None)
        if found != (namespace, name):
            continue
        for task in obj.document["spec"].get("tasks", []):
            table = (task.get("read") or {}).get("table")
            mine = reader_task(reader_tasks, table) if isinstance(table, str) else None
            if mine is None or task.get("active") is False:
                continue
            state = store.tasks.find(obj.namespace, obj.name, task["name"])
            position = writer_position(state.pointer if state else None, reader, mine["name"])
            lowest[mine["name"]] = min(lowest.get(mine["name"], position), position)
    return lowest


def retention(
    spec: SyncJobSpec,
    store: StateStore,
    reader: str,
    reader_tasks: list[dict[str, Any]],
    folder: ChangeLogFolder,
    log: Log,
) -> None:
    """Apply a reader's `keep_days`/`keep_files` after its run, then sweep files no index
    lists from its folders (see the module's docstring)."""
    namespace, _, name = reader.partition("/")
    options = spec.change_log
    files = store.changelogs.of_job(namespace, name)
    by_task: dict[str, list[ChangeLogFile]] = {}
    for entry in files:
        by_task.setdefault(entry.task, []).append(entry)
    needed = writer_positions(store, reader, reader_tasks)
    now = dt.datetime.now(dt.UTC)
    going: list[ChangeLogFile] = []
    for task, entries in by_task.items():  # each in position order, the newest last
        for i, entry in enumerate(entries[:-1]):
            newer = len(entries) - 1 - i  # files newer than this one
            old = False
            if options is not None and options.keep_files is not None and newer >= options.keep_files:
                old = True
            if options is not None and options.keep_days is not None:
                age = now - dt.datetime.fromisoformat(entry.created_at)
                old = old or age > dt.timedelta(days=options.keep_days)
            if old and entry.last_position <= needed.get(task, entry.last_position):
                going.append(entry)
            elif old:
                break  # a writer still needs it, and every newer file too
    if going:
        store.changelogs.remove([e.id for e in going])  # unlisted first: the index never names a gone file
        for entry in going:
            folder.remove(entry.file)
        for task in sorted({e.task for e in going}):
            removed = [e for e in going if e.task == task]
            log(
                "info",
                "change logs removed by retention",
                task=task,
                files=len(removed),
                upto_position=max(e.last_position for e in removed),
            )
    listed = {e.file for e in files} - {e.file for e in going}
    _sweep(folder, reader, [str(t.get("name")) for t in reader_tasks], listed, log)


def _sweep(folder: ChangeLogFolder, reader: str, tasks: list[str], listed: set[str], log: Log) -> None:
    """Remove the files of the reader's task folders that no index entry lists."""
    from runner.connectors.changelog_files import task_folder

    for task in tasks:
        for relative in folder.files_in(task_folder(reader, task)):
            name = folder.name(relative)
            if relative.endswith((".parquet", ".partial")) and name not in listed:
                folder.folder.remove(relative)
                log("info", "change log file no index lists removed (its run stopped first)", file=name)
