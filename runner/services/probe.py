"""Connections in the folder (not the applied state): test them, discover their tables."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from runner.connectors import registry
from runner.definitions import secrets
from runner.definitions.jobs import SyncJobSpec
from runner.definitions.load import DEFAULT_NAMESPACE, Document, format_path, load_folder
from runner.definitions.sync_all import SyncAllJobSpec
from runner.definitions.tasks import WriteSpec
from runner.definitions.validate import (
    Definition,
    resolve_reference,
    validate_documents,
)
from runner.errors import (
    Location,
    NotFound,
    RunnerError,
)
from runner.jobs.types import registered_models
from runner.workspace import Workspace


def _folder_definitions(ws: Workspace) -> tuple[list[Definition], list[Definition], int, list[Document]]:
    """Connections and jobs defined in the folder (not the applied state: a connection is
    tested while it is written, before it is applied), how many problems the folder has, and
    the documents they were read from (where each field is)."""
    docs, problems = load_folder(ws.root)
    definitions, invalid = validate_documents(docs, base_dir=ws.root, **registered_models())
    connections = [d for d in definitions if d.kind == "Connection"]
    jobs = [d for d in definitions if d.kind == "Job"]
    return connections, jobs, len(problems) + len(invalid), docs


def _read_at(docs: list[Document], job: Definition, index: int, task: str) -> str:
    """Where a task's read is defined, and whose it is: `jobs.d/x.yaml:9:7: spec.tasks[0].read
    (job default/x, task t)`."""
    path = ("spec", "tasks", index, "read")
    doc = next(
        (d for d in docs if d.relpath == job.file and d.positions.get((), (0, 0))[0] == job.line), None
    )
    where = doc.locate(path) if doc is not None else Location(job.file, job.line, field=format_path(path))
    return f"{where} (job {job.ref}, task {task})"


def _pick(connections: list[Definition], ref: str, problems: int) -> Definition:
    """`namespace/name`, or a bare name: in 'default', else in the one namespace that has it."""
    if "/" in ref:
        matches = [c for c in connections if c.ref == ref]
    else:
        matches = [c for c in connections if c.name == ref]
        if len(matches) > 1:
            matches = [c for c in matches if c.namespace == DEFAULT_NAMESPACE] or matches
    if len(matches) == 1:
        return matches[0]
    if matches:
        names = ", ".join(c.ref for c in matches)
        raise NotFound(f"connection {ref!r} is ambiguous: {names}; name it as namespace/name")
    note = f" ({problems} problem(s) in the definitions: see `runner validate`)" if problems else ""
    raise NotFound(f"no valid connection {ref!r} in connections.d/{note}")


def _open_sql(ws: Workspace, conn: Definition) -> Any:
    """An SQL connector of a connection from the folder (secrets resolved now, never shown)."""
    from runner.connectors.sql.base import SqlConnector

    connector = registry.open_connector(conn.ref, conn.spec.model_dump(mode="json"), ws.root)
    if not isinstance(connector, SqlConnector):
        connector.close()
        raise RunnerError(f"connection {conn.ref}: type {conn.spec.type!r} cannot be tested or discovered")
    return connector


def connections_test(ws: Workspace, ref: str | None = None) -> list[dict[str, Any]]:
    """Test every connection of the folder (or the one named): connect, report the server's
    version, and check what the jobs using it need: that the tables and queries they read can
    be read, and that a table (and a staging table) can be created where they write, in a
    transaction rolled back. `ok` is False when any check failed; messages are redacted.

    Raises:
        NotFound: `ref` names no valid connection of the folder.
    """
    from runner.connectors.sql import probe

    connections, jobs, problems, docs = _folder_definitions(ws)
    chosen = [_pick(connections, ref, problems)] if ref else connections
    keys = {(c.namespace, c.name) for c in connections}
    usage = {c.ref: probe.Usage() for c in chosen}
    for job in jobs:
        spec = job.spec
        if isinstance(spec, SyncAllJobSpec):  # its tables are listed as a run lists them
            for end in ("source", "target"):
                key = resolve_reference(getattr(spec, end), job.namespace, keys)
                if key is not None and (used := usage.get(f"{key[0]}/{key[1]}")) is not None:
                    if end == "source":
                        used.schemas.append(spec.source_schema)
                    else:
                        used.writes.append(spec.target_table("table"))
            continue
        if not isinstance(spec, SyncJobSpec):
            continue  # what is checked is what a sync job's tasks read and write
        for end in ("source", "target"):
            ref = getattr(spec, end)
            if not isinstance(ref, str):  # a writer's reader job, a reader's change logs
                continue
            key = resolve_reference(ref, job.namespace, keys)
            used = usage.get(f"{key[0]}/{key[1]}") if key else None
            if used is None:
                continue
            if end == "source":
                used.reads.extend((t.read, _read_at(docs, job, i, t.name)) for i, t in enumerate(spec.tasks))
                used.logs = used.logs or any(t.changes.strategy == "cdc" for t in spec.tasks)
            else:
                used.writes.extend(t.write.table for t in spec.tasks if isinstance(t.write, WriteSpec))
    results = []
    for conn in chosen:
        version, checks = _test_one(ws, conn, usage[conn.ref])
        results.append(
            {
                "connection": conn.ref,
                "type": conn.spec.type,
                "file": conn.file,
                "line": conn.line,
                "ok": all(c.ok is not False for c in checks),
                "server": version,
                "checks": [asdict(c) | {"detail": secrets.redact(c.detail)} for c in checks],
            }
        )
    return results


def _test_one(ws: Workspace, conn: Definition, usage: Any) -> tuple[str | None, list[Any]]:
    """The server's version and the checks of one connection; a kind with its own `test` (an
    SMTP server, a broker) is connected to and signed in to by it, a SQL kind probed."""
    from runner.connectors.sql import probe

    kind = registry.kind(conn.spec.type)
    try:
        if kind is not None and kind.test is not None:
            return kind.test(conn.ref, conn.spec, ws.root), [probe.Check("connect", True, "")]
        connector = _open_sql(ws, conn)
    except RunnerError as exc:
        return None, [probe.Check("connect", False, str(exc))]
    try:
        return probe.test(connector, usage)
    finally:
        connector.close()


def discover(ws: Workspace, ref: str, schema: str | None = None) -> dict[str, Any]:
    """The tables of a connection's schema (its default one unless `schema`), with columns,
    their types as runner maps them and primary keys, and a task list to paste into a job:
    one task per table (see `runner.connectors.sql.probe.tasks_for`).

    Raises:
        NotFound: `ref` names no valid connection of the folder.
        TerminalError: the connection or the schema cannot be read (redacted).
    """
    from runner.connectors.sql import probe

    connections, _, problems, _ = _folder_definitions(ws)
    conn = _pick(connections, ref, problems)
    connector = _open_sql(ws, conn)
    try:
        tables = probe.discover(connector, schema)
    finally:
        connector.close()
    return {
        "connection": conn.ref,
        "type": conn.spec.type,
        "schema": schema,
        "tables": [asdict(t) for t in tables],
        "tasks": probe.tasks_for(tables),
    }
