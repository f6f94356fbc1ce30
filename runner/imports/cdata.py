"""CData Sync job JSON as runner YAML (`runner import cdata FILE…`).

Reads the body of CData Sync's job API (`POST …/workspaces/{id}/jobs`, `PUT …/jobs/{id}`: Name,
Type, Source-Connection, Destination-Connection, Schedule/Cron, the job options, Queries) and
its tasks' bodies (`{"query": "REPLICATE [T] SELECT …", "is_active": …}`). Each `REPLICATE
[dest] SELECT … FROM [src]` becomes a task: `read.table` (a plain `SELECT * FROM src`, or no
SELECT at all) or `read.query`, and `write.table`. The job options become runner's own
(`Alter_Schema` -> `schema_changes`, `Truncate_Table_Data`/`Drop_Table` -> `before_run`, …);
what runner has no equivalent for is reported field by field, never guessed.

Field names are matched as CData documents them and as its JSON writes them
(`Source-Connection`, `source_connection_id`, `Alter_Schema`, `alterSchema`, …).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runner.imports.common import (
    Imported,
    ImportFailed,
    Report,
    document,
    header,
    name_of,
    quartz_cron,
    read_json,
    unique,
    unquote_identifier,
    url_connection,
)

_REPLICATE = re.compile(
    r"^\s*REPLICATE\s+(?P<dest>\[[^\]]+\](?:\.\[[^\]]+\])*|\"[^\"]+\"|[\w.]+)"
    r"(?:\s+WITH\s+(?P<with>.*?))?\s*(?P<select>SELECT\b.*?)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_SIMPLE_SELECT = re.compile(
    r"^\s*SELECT\s+\*\s+FROM\s+(\[[^\]]+\](?:\.\[[^\]]+\])*|[\w.\"`]+)\s*$", re.IGNORECASE
)
JOB_TYPES = {"standard": "sync", "syncall": "sync_all"}
NOT_SUPPORTED_TYPES = {
    "loadfolder": "not supported yet (no file kinds: LoadFolder)",
    "changedatacapture": "not supported yet (no log-based change data capture)",
    "reverseetl": "not supported yet (no HTTP or API targets: ReverseETL)",
}
RUNTIME = {
    "id",
    "job_id",
    "jobid",
    "workspace_id",
    "created",
    "modified",
    "status",
    "last_run",
    "pipeline_id",
}


def _key(name: str) -> str:
    """`Source-Connection`, `sourceConnection`, `source_connection` -> `source_connection`."""
    name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name.strip())
    return re.sub(r"[\s\-]+", "_", name).lower()


def _norm(data: dict[str, Any]) -> dict[str, Any]:
    return {_key(k): v for k, v in data.items()}


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def import_files(
    paths: list[Path],
    connections: dict[str, str],
    source: str | None = None,
    target: str | None = None,
) -> Imported:
    """Every CData job (or task body) in `paths` as runner definitions (not written yet).

    Args:
        connections: a CData connection id or name -> a runner connection name, or a URL to
            write as a connection of that name.
        source, target: the connections of a body that names none (a task's body).
    """
    imported = Imported()
    for path in paths:
        data = read_json(path)
        items = data if isinstance(data, list) else [data]
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ImportFailed(f"{path}: item {i} is not a JSON object")
            _job(_norm(item), path, connections, source, target, imported)
    return imported


def _connection(
    value: Any, role: str, where: str, connections: dict[str, str], fallback: str | None, imported: Imported
) -> str | None:
    """The runner connection a CData connection (an id, a name, or `{id, name}`) becomes."""
    ident = name = None
    if isinstance(value, dict):
        v = _norm(value)
        ident, name = v.get("id"), v.get("name")
    elif value:
        ident = str(value)
    if not (ident or name) and fallback:
        name = fallback  # a body naming no connection: `--source`/`--target`, mapped as any name
    for candidate in (name, ident):
        if candidate and candidate in connections:
            given = connections[candidate]
            if "://" in given:
                found = url_connection(
                    name_of(candidate), given, f"connection {name_of(candidate)}", imported.report
                )
                doc = document("Connection", found.name, found.spec or {})
                imported.files.setdefault(
                    f"connections.d/{found.name}.yaml", (header("cdata", "--connection", []), doc)
                )
                return found.name
            return name_of(given)
    if name and name == fallback:
        return name_of(fallback)
    if not (ident or name):
        imported.report.add(
            where,
            f"{role.title()}-Connection",
            "missing: pass --"
            + ("source" if role == "source" else "target")
            + " NAME; the job is not written",
        )
        return None
    ref = name_of(str(name or ident))
    imported.report.add(
        where,
        f"{role.title()}-Connection",
        f"CData connection {name or ident!r} became a reference to connection {ref!r}: define "
        f"connections.d/{ref}.yaml, or import with --connection {name or ident}=URL",
    )
    return ref


def _job(
    job: dict[str, Any],
    path: Path,
    connections: dict[str, str],
    source: str | None,
    target: str | None,
    imported: Imported,
) -> None:
    title = str(job.get("name") or path.stem)
    name = unique(name_of(title), set(imported.jobs))
    where = f"job {title}"
    report = Report()
    kind = _key(str(job.get("type") or "Standard")).replace("_", "")
    if kind in NOT_SUPPORTED_TYPES:
        report.add(where, "Type", f"{job.get('type')}: {NOT_SUPPORTED_TYPES[kind]}; the job is not written")
        imported.report.lines += report.lines
        return
    if kind not in JOB_TYPES:
        report.add(where, "Type", f"{job.get('type')!r}: unknown; the job is not written")
        imported.report.lines += report.lines
        return
    job_type = JOB_TYPES[kind]
    queries = _queries(job)
    if job_type == "sync" and not queries:
        report.add(
            where, "Queries", "none (an update's body, or a job without tasks): the job is not written"
        )
        imported.report.lines += report.lines
        return
    src = _connection(
        job.get("source_connection") or job.get("source_connection_id") or job.get("source"),
        "source",
        where,
        connections,
        source,
        imported,
    )
    dst = _connection(
        job.get("destination_connection") or job.get("destination_connection_id") or job.get("destination"),
        "destination",
        where,
        connections,
        target,
        imported,
    )
    spec: dict[str, Any] = {}
    if job_type != "sync":
        spec["type"] = job_type
    spec["source"], spec["target"] = src, dst
    tasks: list[dict[str, Any]] = []
    if job_type == "sync":
        for i, (query, active) in enumerate(queries):
            task = _task(query, f"{where}: Queries[{i}].", report)
            if task is None:
                continue
            if not active:
                task["active"] = False
            base, n = task["name"], 2
            while any(t["name"] == task["name"] for t in tasks):
                task = {**task, "name": f"{base}-{n}"}
                n += 1
            tasks.append(task)
    elif queries:
        report.add(where, "Queries", "ignored: a SyncAll job copies every table of the source schema")
    _options(job, where, spec, tasks, report)
    if src is None or dst is None or (job_type == "sync" and not tasks):
        report.add(where, "", "not written: see above")
        imported.report.lines += report.lines
        return
    if tasks:
        spec["tasks"] = tasks
    origin = f"job {title}" + (f" ({job['id']})" if job.get("id") else "") if job.get("name") else path.name
    description = f"Imported from CData Sync {origin}."
    doc = document("Job", name, spec, description)
    labels = job.get("labels")
    if isinstance(labels, dict) and labels:
        doc["metadata"]["labels"] = {name_of(str(k)): str(v) for k, v in labels.items()}
    elif labels:
        report.add(where, "Labels", "not mapped: runner's labels are key: value pairs")
    imported.files[f"jobs.d/{name}.yaml"] = (header("cdata", path.name, report.lines), doc)
    imported.jobs.append(name)
    imported.report.lines += report.lines


def _queries(job: dict[str, Any]) -> list[tuple[str, bool]]:
    """The job's task queries with whether each is active: `Queries` as strings or task bodies,
    `Tasks`, or the body of one task (`query`, `is_active`)."""
    found: list[tuple[str, bool]] = []
    entries = job.get("queries") or job.get("tasks") or []
    if isinstance(entries, str):
        entries = [entries]
    if job.get("query"):
        entries = [*entries, {"query": job["query"], "is_active": job.get("is_active", True)}]
    indexed = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            indexed.append((i, entry, True))
        elif isinstance(entry, dict):
            e = _norm(entry)
            active = _truthy(e.get("is_active", True))
            indexed.append(
                (
                    int(e.get("index", i)) if str(e.get("index", "")).isdigit() else i,
                    str(e.get("query") or ""),
                    active,
                )
            )
    for _, query, active in sorted(indexed, key=lambda t: t[0]):
        found.append((query, active))
    return found


def _task(query: str, where: str, report: Report) -> dict[str, Any] | None:
    m = _REPLICATE.match(query)
    if m is None:
        report.add(where, "query", f"not a REPLICATE statement ({query[:60]!r}): not mapped")
        return None
    dest = unquote_identifier(m.group("dest"))
    select = (m.group("select") or "").strip()
    read: dict[str, Any]
    if not select:
        read = {"table": dest}
    elif (simple := _SIMPLE_SELECT.match(select)) is not None:
        read = {"table": unquote_identifier(simple.group(1))}
    else:
        quoted = re.sub(r"\[([^\]]+)\]", r'"\1"', select)
        read = {"query": quoted}
        if quoted != select:
            report.add(
                where, "query", 'its [identifiers] became "identifiers" in read.query (standard SQL quoting)'
            )
    if m.group("with"):
        report.add(where, "query", f"WITH {m.group('with').strip()}: not supported")
    return {"name": name_of(dest.rpartition(".")[2], "task"), "read": read, "write": {"table": dest}}


def _options(
    job: dict[str, Any], where: str, spec: dict[str, Any], tasks: list[dict[str, Any]], report: Report
) -> None:
    """The job options CData documents, as runner's job-wide fields, or reported."""
    schedule = job.get("schedule")
    cron = job.get("cron")
    enabled = True
    if isinstance(schedule, dict):
        s = _norm(schedule)
        cron = s.get("cron") or cron
        enabled = _truthy(s.get("enabled", True))
    if cron and enabled:
        converted = quartz_cron(str(cron))
        if converted is None:
            report.add(where, "Schedule.Cron", f"{cron!r} cannot be said as a cron runner reads: not mapped")
        else:
            spec["schedule"] = {"cron": converted}
    elif cron:
        report.add(where, "Schedule", "not enabled: no schedule (run it with `runner run`)")
    if job.get("batch_size"):
        spec["batch_size"] = int(job["batch_size"])
    if _truthy(job.get("enable_parallel_processing")):
        spec["parallel"] = max(2, int(job.get("worker_pool") or 2))
    if (verbosity := job.get("verbosity")) not in (None, ""):
        spec["log_level"] = {1: "warning", 2: "info"}.get(int(verbosity), "debug")
    if job.get("destination_schema"):
        spec["schema"] = str(job["destination_schema"])
    if job.get("table_name_prefix"):
        spec["table_prefix"] = str(job["table_name_prefix"])
    if _truthy(job.get("continue_on_error")):
        spec["on_error"] = "continue"
    if "alter_schema" in job:
        spec["schema_changes"] = "add_and_widen" if _truthy(job["alter_schema"]) else "off"
    if _truthy(job.get("auto_truncate_strings")):
        spec["truncate_strings"] = True
    if _truthy(job.get("drop_table")):
        spec["before_run"] = "recreate"
        if _truthy(job.get("truncate_table_data")):
            report.add(where, "Truncate_Table_Data", "left out: Drop_Table drops the table first anyway")
    elif _truthy(job.get("truncate_table_data")):
        spec["before_run"] = "truncate"
    behavior = str(job.get("deletion_behavior") or "").lower().replace("_", "")
    if behavior:
        deletes = {
            "harddelete": "propagate",
            "softdelete": "soft",
            "skipdelete": "ignore",
            "skip": "ignore",
        }.get(behavior)
        if deletes is None:
            report.add(where, "Deletion_Behavior", f"{job['deletion_behavior']!r}: not mapped")
        elif deletes != "ignore":
            report.add(
                where,
                "Deletion_Behavior",
                f"not mapped: deletes: {deletes} needs write.keys on each task, which REPLICATE does not "
                "name (CData uses the source's primary key): add keys, then deletes",
            )
    if _truthy(job.get("history_mode")):
        report.add(where, "History_Mode", "not mapped: write.history needs write.keys on each task; add both")
    if _truthy(job.get("use_gmt_date_time") or job.get("use_gmt_datetime")):
        report.add(
            where,
            "Use_GMT_DateTime",
            "not needed: timestamps are copied as they are (read.timezone converts from a zone to UTC)",
        )
    for field in ("replicate_interval", "replicate_interval_unit", "replicate_start_date"):
        if job.get(field):
            report.add(
                where,
                field.title().replace("_", "_"),
                "not mapped: changes.start and window need a watermark task (changes.column)",
            )
    if _truthy(job.get("send_email")) or job.get("email_to"):
        report.add(
            where,
            "Send_Email",
            "not mapped: notify: [{email: {connection, to}}] needs an smtp connection; add one",
        )
    for field in ("pre_job_event", "post_job_event"):
        if job.get(field):
            report.add(
                where,
                field.title(),
                "not mapped: CData's event code; write events.before/after (SQL or a command)",
            )
    if job.get("cdc_engine_settings"):
        report.add(where, "CDC_Engine_Settings", "not supported yet (no log-based change data capture)")
    handled = {
        "name",
        "type",
        "source_connection",
        "source_connection_id",
        "source",
        "destination_connection",
        "destination_connection_id",
        "destination",
        "schedule",
        "cron",
        "batch_size",
        "enable_parallel_processing",
        "worker_pool",
        "verbosity",
        "destination_schema",
        "table_name_prefix",
        "continue_on_error",
        "alter_schema",
        "auto_truncate_strings",
        "drop_table",
        "truncate_table_data",
        "deletion_behavior",
        "history_mode",
        "use_gmt_date_time",
        "use_gmt_datetime",
        "replicate_interval",
        "replicate_interval_unit",
        "replicate_start_date",
        "send_email",
        "email_to",
        "email_error_only",
        "email_subject",
        "pre_job_event",
        "post_job_event",
        "cdc_engine_settings",
        "labels",
        "queries",
        "tasks",
        "query",
        "is_active",
        "index",
    }
    ignored = sorted(k for k in job if k in RUNTIME)
    if ignored:
        report.add(where, "", f"ignored (runtime state, not definitions): {', '.join(ignored)}")
    for field, value in job.items():
        if field not in handled and field not in RUNTIME and value not in (None, "", [], {}):
            report.add(where, field, "not supported")
