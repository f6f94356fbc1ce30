"""The `sync_all` job type's run: list the tables of the source schema, make each table that the
job's patterns choose a task (named after the table, with its own pointer or digests), and run
those tasks with the `sync` type's engine (`runner.jobs.sync.run_job`: the same strategies,
`parallel` and `on_error`).

Each run lists the tables again: a table created in the source since the last run is a new
task (its first run loads it); a table whose task ran before and which is no longer in the
source is reported (a warning in the run log and a `dropped_in_source` entry in the history)
and never dropped in the target. Its pointer and digests are forgotten, so it is reported
once, and a table created again under that name is copied afresh.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from runner.changes.task import Locate, Log, Progress, RunOptions, TaskResult
from runner.connectors import registry
from runner.connectors.base import CatalogSource, DiscoveredTable
from runner.definitions.load import PathKey
from runner.definitions.sync_all import SyncAllJobSpec
from runner.definitions.tasks import Task, task_name
from runner.errors import Location, NotFound, TerminalError
from runner.jobs.sync import run_job
from runner.jobs.types import JOB_TYPES, JobType
from runner.state.store import StateReader, StateStore
from runner.streams.cancel import CancelToken

DROPPED = "dropped_in_source"


@dataclass
class Expansion:
    """What a sync_all job expands to now: a task per chosen table (in name order), the task
    names of the tables it chose before that no longer exist, and the tables new since."""

    tasks: list[Task] = field(default_factory=list)
    tables: list[DiscoveredTable] = field(default_factory=list)  # the chosen ones, as `tasks`
    gone: list[str] = field(default_factory=list)  # task names
    new: list[str] = field(default_factory=list)  # task names with no state yet

    def rows(self, spec: SyncAllJobSpec) -> list[dict[str, Any]]:
        """The expansion as data, for `runner tasks` and `runner plan --expand`."""
        out: list[dict[str, Any]] = [
            {
                "task": task.name,
                "source": task.read.table,
                "target": task.write.table,
                "strategy": task.changes.strategy,
                "column": task.changes.column,
                "keys": list(task.write.keys),
                "deletes": task.deletes,
                "state": "new" if task.name in self.new else "known",
            }
            for task in self.tasks
        ]
        out += [
            {
                "task": name,
                "source": None,
                "target": None,
                "strategy": None,
                "column": None,
                "keys": [],
                "deletes": spec.deletes,
                "state": DROPPED,
            }
            for name in self.gone
        ]
        return out


def source_tables(
    spec: SyncAllJobSpec, connection: tuple[str, dict[str, Any]], base_dir: Path
) -> list[DiscoveredTable]:
    """The tables of the job's source schema, read from the source's catalog.

    Raises:
        TerminalError: the source's kind keeps no catalog, or the schema does not exist.
        TransientError: the source cannot be reached.
    """
    connector = registry.open_connector(*connection, base_dir)
    try:
        if not connector.capabilities.catalog:
            raise TerminalError(
                f"connection {connection[0]!r} of type {connector.kind!r} cannot list its tables: "
                "a sync_all job needs a source that can (catalog)"
            )
        connector.check_connection()
        return cast(CatalogSource, connector).tables(spec.source_schema)
    finally:
        connector.close()


def chosen(spec: SyncAllJobSpec, table: str) -> bool:
    """Whether `include` matches the table's name and `exclude` does not (case-sensitive)."""
    return any(fnmatch.fnmatchcase(table, p) for p in spec.include) and not any(
        fnmatch.fnmatchcase(table, p) for p in spec.exclude
    )


def expand(spec: SyncAllJobSpec, tables: list[DiscoveredTable], known: set[str]) -> Expansion:
    """The tasks the job's tables make, by the rule: keys from the primary key; watermark on
    the first of `watermark_columns` a keyed table has, else hash with a key, else full.

    Task names are made over every table of the schema (`table_task_names`), so they stay the
    same when the patterns change. `known`: the task names that have a state (ran before)."""
    names = table_task_names([t.name for t in tables])
    out = Expansion(gone=sorted(known - set(names.values())))
    for table in tables:
        if not chosen(spec, table.name):
            continue
        columns = {c.name for c in table.columns}
        keys = list(table.primary_key)
        column = next((c for c in spec.watermark_columns if c in columns), None) if keys else None
        changes: dict[str, Any] = {"strategy": "watermark", "column": column} if column else {}
        if not column:
            changes["strategy"] = "hash" if keys else "full"
        write: dict[str, Any] = {"table": spec.target_table(table.name)}
        if keys:
            write["keys"] = keys
        task = Task.model_validate(
            {
                "name": names[table.name],
                "read": {"table": table.ref, "unmapped_types": spec.unmapped_types},
                "write": write,
                "changes": changes,
                "deletes": spec.deletes if keys else "ignore",
            }
        )
        out.tasks.append(task)
        out.tables.append(table)
        if task.name not in known:
            out.new.append(task.name)
    return out


def table_task_names(tables: list[str]) -> dict[str, str]:
    """Each table's task name: its name made a valid task name (`orders`, `Mixed Case` ->
    `mixed-case`), and where tables of the schema make the same one (`Orders` and `orders`),
    each of them that name with a digest of its own exact name (`orders-b7e8acdd`).

    A task's name carries its pointer and digests, so it must never pass from one table to
    another: numbering the tables that clash in name order would hand `orders-2`'s name to
    another table, or `orders`' pointer to `orders-2`'s table once `Orders` is dropped, which
    then skips the rows between the two pointers. A name made here depends on the tables that
    clash with it only: when one of them comes or goes, the others' names change (the old
    ones are reported gone, the new ones load afresh), and no state is ever inherited.

    Raises:
        TerminalError: two tables still make one name (a table named like another's digest).
    """
    bases: dict[str, list[str]] = {}
    for table in sorted(tables):
        bases.setdefault(task_name(table, set()), []).append(table)
    names: dict[str, str] = {}
    for base, clashing in bases.items():
        for table in clashing:
            if len(clashing) == 1:
                names[table] = base
            else:
                digest = hashlib.sha256(table.encode()).hexdigest()[:8]
                names[table] = f"{base[:54].rstrip('-_.')}-{digest}"
    seen: dict[str, str] = {}
    for table, task in names.items():
        if task in seen:
            raise TerminalError(
                f"tables {seen[task]!r} and {table!r} of the source make the same task name {task!r}; "
                "leave one out with `exclude`"
            )
        seen[task] = table
    return names


def known_tasks(store: StateReader, namespace: str, job: str) -> set[str]:
    """The tasks of a job that have a state: the tables it ran before."""
    return {state.task for state in store.tasks.states(namespace, job)}


def _locator(locate: Locate | None, spec: SyncAllJobSpec) -> Locate | None:
    """Where a field of a made task comes from in the sync_all job: the watermark column from
    `watermark_columns`, deletes from `deletes`, the rest from the job's spec."""
    if locate is None:
        return None

    def where(path: PathKey) -> Location:
        rest = path[3:] if path[:2] == ("spec", "tasks") else ()
        if rest[:1] == ("changes",):
            return locate(("spec", "watermark_columns"))
        if rest[:1] == ("deletes",) or rest[:2] == ("write", "soft_delete_column"):
            return locate(("spec", "deletes"))
        if rest[:2] == ("read", "unmapped_types"):
            return locate(("spec", "unmapped_types"))
        return locate(("spec", "source_schema") if spec.source_schema else ("spec",))

    return where


def run_sync_all(
    spec: SyncAllJobSpec,
    connections: dict[str, tuple[str, dict[str, Any]]],
    base_dir: Path,
    *,
    store: StateStore,
    namespace: str,
    job: str,
    run_id: str,
    options: RunOptions,
    log: Log,
    on_task: Callable[[TaskResult], None] | None = None,
    progress: Progress | None = None,
    cancel: CancelToken | None = None,
    locate: Locate | None = None,
) -> list[TaskResult]:
    """Expand the job into a task per table and run them as a sync job would (see
    `runner.jobs.sync.run_job`); tables gone from the source are reported, never dropped.

    Raises:
        NotFound: `options.tasks` names a task the job's tables do not make.
        RunnerError: the source's tables cannot be listed.
    """
    where = _schema_words(spec)
    log("info", "listing the source's tables", connection=connections["source"][0], schema=where)
    tables = source_tables(spec, connections["source"], base_dir)
    found = expand(spec, tables, known_tasks(store, namespace, job))
    log(
        "info",
        "listed the source's tables",
        schema=where,
        tables=len(tables),
        chosen=len(found.tasks),
        new=found.new,
    )
    names = [t.name for t in found.tasks]
    unknown = sorted(set(options.tasks or ()) - set(names))
    if unknown:
        raise NotFound(
            f"job {namespace}/{job} has no task {', '.join(map(repr, unknown))} "
            f"(its tables make: {', '.join(names) or 'none'})"
        )
    for name in found.new:
        log("info", "a new table in the source: its first run loads it", task=name)
    gone = [] if options.tasks else _report_gone(found.gone, spec, store, namespace, job, options, log)
    if not found.tasks:
        log(
            "warning", f"no table of {where} matches include and exclude: nothing to copy", tables=len(tables)
        )
        return gone
    results = run_job(
        spec.as_sync(found.tasks),
        connections,
        base_dir,
        store=store,
        namespace=namespace,
        job=job,
        run_id=run_id,
        options=options,
        log=log,
        on_task=on_task,
        progress=progress,
        cancel=cancel,
        locate=_locator(locate, spec),
    )
    return results + gone


def _schema_words(spec: SyncAllJobSpec) -> str:
    return f"schema {spec.source_schema}" if spec.source_schema else "the default schema"


def _report_gone(
    names: list[str],
    spec: SyncAllJobSpec,
    store: StateStore,
    namespace: str,
    job: str,
    options: RunOptions,
    log: Log,
) -> list[TaskResult]:
    """A result per table gone from the source; its state is forgotten (not in a dry run),
    so the next run does not report it again and a table created again starts afresh."""
    results = []
    states = {s.task: s for s in store.tasks.states(namespace, job)}
    for name in names:
        target = spec.target_table(name)
        note = (
            f"the table is no longer in {_schema_words(spec)} of the source; nothing was dropped in "
            "the target: its table is kept as it is"
        )
        if not options.dry_run and name in states:
            store.tasks.remove(states[name].id)
            note += "; the task's pointer and digests are forgotten"
        log("warning", f"table gone from the source: {note}", task=name)
        results.append(TaskResult(name, name, target, "-", DROPPED, note=note))
    return results


JOB_TYPES.register("sync_all", JobType(SyncAllJobSpec, run_sync_all))
