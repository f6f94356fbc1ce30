"""DataZen job definitions as runner YAML (`runner import datazen FILE…`).

Reads what DataZen's job API takes and gives (`POST/PUT /job`, `POST /job/dynamic`, `GET
/job/dynamic`, `GET /jobs/info`) and its Manager's "Export JSON": a `JobReader` (SqlRead,
UpsertColumns, TimestampCol, SyncStrategy, CronSchedule, JsonData, PipelineDef) and a
`JobWriter` (TargetObject, UpsertScript, Options) — a Direct Job when both are given, which
is what a runner `sync` job is: one task from the reader's SQL to the writer's table.

Every field is either mapped, or reported (`job KEY: JobWriter.UpsertScript: …`): runtime
state (pointers, status, times) is listed as ignored, settings runner has no equivalent for
say so, and systems runner has no kind for (messaging, drives, HTTP, CDC, SQL Server) keep
the job from being written rather than being guessed at.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from runner.imports.common import (
    Connection,
    Imported,
    ImportFailed,
    Report,
    document,
    header,
    is_connection_string,
    name_of,
    quartz_cron,
    read_json,
    string_connection,
    unique,
    unquote_identifier,
    url_connection,
)

READER_RUNTIME = {
    "Guid",
    "CreatedOn",
    "Status",
    "LastRunTime",
    "IsDirty",
    "LastTsPointer",
    "LastTsDelPointer",
    "SystemName",
    "IsDBSource",
    "IsHttpSource",
    "IsDriveSource",
    "IsQueueingSource",
    "IsCDCSource",
    "JobType",
    "IsDirect",
    "TrackLastTs",
    "AuditLogEnabled",
    "Initialize",
    "LastExecutionId",
}
WRITER_RUNTIME = {
    "Guid",
    "JobKey",
    "SourceJobKey",
    "LastExecutionId",
    "CreatedOn",
    "Status",
    "LastRunTime",
    "InitialExecutionId",
    "LastSchemaHash",
    "IsDirty",
    "IsDirect",
    "JobType",
    "SystemName",
    "AuditLogEnabled",
}
NO_QUEUES = "not supported yet (no queue kinds)"
UNSUPPORTED_JSONDATA = {
    "MessagingOptions": NO_QUEUES,
    "IsQueuingSource": NO_QUEUES,
    "DriveSourceSettings": "not supported yet (no file kinds)",
    "HttpSourceSettings": "not supported yet (no HTTP kinds)",
    "BigDataSourceSettings": "not supported yet (no big-data kinds)",
    "Column2TableTxSettings": "not supported yet (no transforms)",
    "CDCSettings": "not supported yet (no log-based change data capture)",
    "CDCTokenDeletedField": "not supported yet (no log-based change data capture)",
    "DynamicParameter": "not supported (a run takes no parameters)",
    "EncryptionFile": "not supported (runner keeps no change-log files to encrypt)",
    "JobTriggers": "not mapped: name the jobs in spec.after (runner triggers by job name)",
}
NOT_NEEDED_JSONDATA = {
    "AuditLogEnabled": "not needed: every run keeps its history and log (.runner/history)",
    "KeepChangedLogFiles": "not needed: a direct job keeps no change-log files",
    "BypassTopN": "ignored (the Manager's preview)",
    "TopNOverride": "ignored (the Manager's preview)",
    "BypassSchemaDetection": "not needed: runner reads the source's columns on each run",
    "JobTriggersEnabled": "ignored (see JobTriggers)",
    "DeletedRecordsMethod": "ignored (DeletedRecordsSQL and PropagateDelete say it)",
}
_SIMPLE_SELECT = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+([\w.\[\]\"`]+)\s*;?\s*$", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"'?\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}'?")


def _empty(value: Any) -> bool:
    return value in (None, "", False, 0, [], {})


def import_files(paths: list[Path], connections: dict[str, str]) -> Imported:
    """Every DataZen job in `paths` as runner definitions (not written yet: `common.write`).

    Args:
        connections: DataZen connection key (or a literal connection string's job) -> a runner
            connection name, or a URL to write as a connection of that key's name.
    """
    imported = Imported()
    for path in paths:
        data = read_json(path)
        items = data if isinstance(data, list) else [data]
        found = 0
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ImportFailed(f"{path}: item {i} is not a JSON object")
            reader, writer = _parts(item)
            if reader is None and writer is None:
                continue
            found += 1
            _job(reader, writer, path.name, connections, imported)
        if not found:
            raise ImportFailed(
                f"{path}: no DataZen job in it (a JobReader/JobWriter, or a job reader with SqlRead)"
            )
    return imported


def _parts(item: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    if "JobReader" in item or "JobWriter" in item:
        return item.get("JobReader"), item.get("JobWriter")
    if "SqlRead" in item:  # a reader by itself (GET /job/dynamic)
        return item, None
    if "TargetObject" in item or "SourceJobKey" in item:
        return None, item
    return None, None


def _connection(
    value: str,
    system: str | None,
    role: str,
    job: str,
    where: str,
    connections: dict[str, str],
    report: Report,
    pending: list[Connection],
) -> str | None:
    """The runner connection a reader's or writer's `ConnectionString` becomes: a key mapped
    by `--connection`, a literal string of a kind runner has (to write as a connection, added
    to `pending`), or a key left as a named reference (reported). None: no kind for it."""
    if value in connections:
        given = connections[value]
        if "://" in given:
            found = url_connection(name_of(value), given, f"connection {name_of(value)}", report)
            pending.append(found)
            return found.name
        return name_of(given)
    if is_connection_string(value):
        found_or_none = string_connection(value, system, f"{job}-{role}", where, report)
        if found_or_none is not None:
            pending.append(found_or_none)
            return found_or_none.name
        return None
    if not value:
        report.add(where, "ConnectionString", "missing: the job is not written")
        return None
    name = name_of(value)
    report.add(
        where,
        "ConnectionString",
        f"the DataZen connection key {value!r} became a reference to connection {name!r}: define "
        f"connections.d/{name}.yaml, or import with --connection {value}=URL",
    )
    return name


def _add_connection(found: Connection, imported: Imported) -> None:
    if found.spec is None:
        return
    doc = document("Connection", found.name, found.spec)
    imported.files.setdefault(f"connections.d/{found.name}.yaml", (header("datazen", found.source, []), doc))


def _job(
    reader: dict[str, Any] | None,
    writer: dict[str, Any] | None,
    file: str,
    connections: dict[str, str],
    imported: Imported,
) -> None:
    key = str(
        (reader or {}).get("JobKey")
        or (writer or {}).get("SourceJobKey")
        or (writer or {}).get("JobKey")
        or ""
    )
    name = unique(name_of(key or Path(file).stem), set(imported.jobs))
    where = f"job {key or name}"
    report = Report()
    skip = False
    if reader is None:
        report.add(
            where,
            "JobReader",
            "missing: a writer that applies another job's change logs is not supported yet",
        )
        imported.report.lines += report.lines
        return
    if writer is None:
        direct = (reader.get("JsonData") or {}).get("DirectWriter")
        why = (
            f"its writer {direct!r} is not in the input"
            if direct
            else "a reader-only job (change logs) is not supported yet"
        )
        report.add(where, "JobWriter", f"missing: {why}; the job is not written")
        skip = True
    spec: dict[str, Any] = {}
    task: dict[str, Any] = {"name": "main"}
    skip |= not _reader(reader, where, spec, task, report)
    if writer is not None:
        skip |= not _writer(writer, where, spec, task, report)
    pending: list[Connection] = []
    source = _connection(
        str(reader.get("ConnectionString") or ""),
        reader.get("SystemName"),
        "source",
        name,
        f"{where}: JobReader.",
        connections,
        report,
        pending,
    )
    target = None
    if writer is not None:
        target = _connection(
            str(writer.get("ConnectionString") or ""),
            writer.get("TargetSystem"),
            "target",
            name,
            f"{where}: JobWriter.",
            connections,
            report,
            pending,
        )
    if skip or source is None or target is None:
        report.add(where, "", "not written: see above")
        imported.report.lines += report.lines
        return
    for found in pending:
        _add_connection(found, imported)
    order = ["name", "active", "read", "write", "changes", "deletes"]
    task = {k: task[k] for k in order if k in task}
    spec = {"source": source, "target": target, **spec, "tasks": [task]}
    if pointer := str(reader.get("LastTsPointer") or "").strip():
        report.add(
            f"{where}: JobReader.",
            "LastTsPointer",
            f"{pointer!r}: to go on from it, after apply: "
            f"runner pointer set {name} {task['name']} '{pointer}'",
        )
    guid = reader.get("Guid")
    origin = f"job {key}" + (f" ({guid})" if guid else "") if key else file
    doc = document("Job", name, spec, f"Imported from DataZen {origin}.")
    came = f"{file} (JobKey {key})" if key else file
    imported.files[f"jobs.d/{name}.yaml"] = (header("datazen", came, report.lines), doc)
    imported.jobs.append(name)
    imported.report.lines += report.lines


def _reader(
    r: dict[str, Any], where: str, spec: dict[str, Any], task: dict[str, Any], report: Report
) -> bool:
    """Map a JobReader's fields into `spec` and `task`; False when the job cannot be written."""
    at = f"{where}: JobReader."
    ok = True
    sql = str(r.get("SqlRead") or "").strip()
    if not sql:
        report.add(at, "SqlRead", "empty: only a SQL reader can be mapped; the job is not written")
        ok = False
    elif (simple := _SIMPLE_SELECT.match(sql)) is not None:
        task["read"] = {"table": unquote_identifier(simple.group(1))}
    else:
        task["read"] = {"query": sql}
        if "[" in sql or sql.upper().startswith("EXEC"):
            report.add(
                at,
                "SqlRead",
                "kept as read.query as written: it is in SQL Server's dialect; rewrite it for the source",
            )
    keys = [k.strip() for k in str(r.get("UpsertColumns") or "").split(",") if k.strip()]
    column = str(r.get("TimestampCol") or "").strip()
    strategy = str(r.get("SyncStrategy") or "Full")
    if column and keys:
        task["changes"] = {"strategy": "watermark", "column": column}
    elif column:
        report.add(
            at, "TimestampCol", "not mapped: a watermark needs key columns (UpsertColumns); read in full"
        )
    elif strategy.lower() != "full":
        report.add(at, "SyncStrategy", f"{strategy!r} not mapped: read in full (changes.strategy: full)")
    if keys:
        task.setdefault("write", {})["keys"] = keys
    if r.get("PropagateDelete"):
        task["deletes"] = "propagate"
    json_data = r.get("JsonData") or {}
    deleted = str(json_data.get("DeletedRecordsSQL") or "").strip()
    if deleted:
        if task.get("changes", {}).get("strategy") == "watermark":
            task["read"]["deleted_keys_query"] = deleted
            task["deletes"] = "propagate"
            report.add(
                at, "JsonData.DeletedRecordsSQL", "mapped to read.deleted_keys_query (deletes: propagate)"
            )
        else:
            report.add(
                at, "JsonData.DeletedRecordsSQL", "not mapped: runner runs it for watermark tasks only"
            )
    if cron := str(r.get("CronSchedule") or "").strip():
        converted = quartz_cron(cron)
        if converted is None:
            report.add(at, "CronSchedule", f"{cron!r} cannot be said as a cron runner reads: not mapped")
        else:
            spec["schedule"] = {"cron": converted}
    if r.get("Active") is False:
        task["active"] = False
        report.add(
            at,
            "Active",
            "false: the task is switched off (active: false); `runner suspend` is the runtime switch",
        )
    if (timeout := json_data.get("ExecutionTimeout")) and isinstance(timeout, int | float) and timeout > 0:
        spec["timeout"] = f"{int(timeout)}s"
    for field, why in UNSUPPORTED_JSONDATA.items():
        if not _empty(json_data.get(field)):
            report.add(at, f"JsonData.{field}", why)
            ok = ok and field not in (
                "MessagingOptions",
                "IsQueuingSource",
                "DriveSourceSettings",
                "HttpSourceSettings",
                "BigDataSourceSettings",
                "CDCSettings",
            )
    for field, why in NOT_NEEDED_JSONDATA.items():
        if not _empty(json_data.get(field)):
            report.add(at, f"JsonData.{field}", why)
    known = {
        *UNSUPPORTED_JSONDATA,
        *NOT_NEEDED_JSONDATA,
        "DirectWriter",
        "DeletedRecordsSQL",
        "ExecutionTimeout",
    }
    for field, value in json_data.items():
        if field not in known and not _empty(value):
            report.add(at, f"JsonData.{field}", "not supported")
    if r.get("IsQueueingSource") or r.get("IsDriveSource") or r.get("IsHttpSource") or r.get("IsCDCSource"):
        report.add(at, "", "its source is not a database: not supported yet")
        ok = False
    if not _empty(r.get("PipelineDef")):
        names = ", ".join(str(p.get("Name", "?")) for p in r["PipelineDef"] if isinstance(p, dict))
        report.add(at, "PipelineDef", f"not supported yet (no transforms): {names}")
    if not _empty(r.get("Path")):
        report.add(at, "Path", "not needed: a direct job keeps no change-log files")
    handled = {
        "JobKey",
        "SqlRead",
        "UpsertColumns",
        "TimestampCol",
        "SyncStrategy",
        "PropagateDelete",
        "JsonData",
        "CronSchedule",
        "Active",
        "PipelineDef",
        "Path",
        "ConnectionString",
    }
    ignored = sorted(f for f in r if f in READER_RUNTIME and not _empty(r[f]))
    if ignored:
        report.add(at, "", f"ignored (runtime state, not definitions): {', '.join(ignored)}")
    for field, value in r.items():
        if field not in handled and field not in READER_RUNTIME and not _empty(value):
            report.add(at, field, "not supported")
    return ok


def _writer(
    w: dict[str, Any], where: str, spec: dict[str, Any], task: dict[str, Any], report: Report
) -> bool:
    """Map a JobWriter's fields; False when the job cannot be written."""
    at = f"{where}: JobWriter."
    ok = True
    system = str(w.get("TargetSystem") or "DB").upper()
    if system != "DB" and system != "":
        why = NO_QUEUES if system == "MESSAGING" else f"not supported yet (no {system.lower()} kinds)"
        report.add(at, "TargetSystem", f"{w.get('TargetSystem')}: {why}; the job is not written")
        ok = False
    target = str(w.get("TargetObject") or "").strip()
    write = task.setdefault("write", {})
    if target:
        write["table"] = unquote_identifier(target)
        task["name"] = name_of(write["table"].rpartition(".")[2], "main")
    elif ok:
        report.add(at, "TargetObject", "empty: a table to write is needed; the job is not written")
        ok = False
    keys = [k.strip() for k in str(w.get("UpsertColumns") or "").split(",") if k.strip()]
    if keys:
        write["keys"] = keys
    elif ok:
        report.add(
            at,
            "UpsertColumns",
            "empty: DataZen appends rows; runner without write.keys replaces the table's rows each run",
        )
    order = ["table", "keys"]
    task["write"] = {k: write[k] for k in order if k in write} | {
        k: v for k, v in write.items() if k not in order
    }
    if w.get("PropagateDelete"):
        task["deletes"] = "propagate"
    for field, into in (("UpsertScript", "upsert_script"), ("DeleteScript", "delete_script")):
        script = str(w.get(field) or "").strip()
        if not script or not ok:
            if script:
                report.add(at, field, "not mapped (the target is not a database)")
            continue
        translated = _script(script)
        if translated is None:
            report.add(
                at,
                field,
                "not mapped: its template is not only {{column}} placeholders; write it as a Jinja script",
            )
            continue
        task["write"][into] = translated
        report.add(
            at,
            field,
            f"mapped to write.{into}: {{{{column}}}} became {{{{ bind('column') }}}} (a bound value)",
        )
    options = w.get("Options") or {}
    if options.get("BatchCount"):
        spec["batch_size"] = int(options["BatchCount"])
    if options.get("ExecTimeout"):
        spec.setdefault("timeout", f"{int(options['ExecTimeout'])}s")
    if options.get("AutoRecreate"):
        report.add(
            at,
            "Options.AutoRecreate",
            "not mapped: schema_changes follows the source's columns "
            "(before_run: recreate drops the table every run)",
        )
    errors = options.get("ErrorHandling") or {}
    if errors.get("RetryCount"):
        spec["retry"] = {
            "attempts": int(errors["RetryCount"]) + 1,
            "backoff": f"{int(errors.get('RetryTTLSeconds') or 10)}s",
        }
    if errors.get("DeadLetterQueuePath") or errors.get("ActionOnFail"):
        report.add(at, "Options.ErrorHandling", "ActionOnFail/DeadLetterQueuePath not supported")
    for field in ("MessagingUpsertSettings", "MessagingDeleteSettings", "IsPassthroughMessaging"):
        if not _empty(options.get(field)):
            report.add(at, f"Options.{field}", NO_QUEUES)
    for field, value in options.items():
        if field not in (
            "BatchCount",
            "ExecTimeout",
            "AutoRecreate",
            "ErrorHandling",
            "MessagingUpsertSettings",
            "MessagingDeleteSettings",
            "IsPassthroughMessaging",
        ) and not _empty(value):
            report.add(at, f"Options.{field}", "not supported")
    if w.get("Active") is False:
        task["active"] = False
    if not _empty(w.get("PipelineDef")):
        report.add(at, "PipelineDef", "not supported yet (no transforms)")
    if str(w.get("CronSchedule") or "").strip():
        report.add(at, "CronSchedule", "ignored: a direct job runs on its reader's schedule")
    if not _empty(w.get("JsonData")):
        report.add(at, "JsonData", "not supported")
    if not _empty(w.get("Path")):
        report.add(at, "Path", "not needed: a direct job keeps no change-log files")
    ignored = sorted(f for f in w if f in WRITER_RUNTIME and not _empty(w[f]))
    if ignored:
        report.add(at, "", f"ignored (runtime state, not definitions): {', '.join(ignored)}")
    handled = {
        "TargetSystem",
        "TargetObject",
        "UpsertColumns",
        "PropagateDelete",
        "UpsertScript",
        "DeleteScript",
        "Options",
        "Active",
        "PipelineDef",
        "CronSchedule",
        "JsonData",
        "Path",
        "ConnectionString",
    }
    for field, value in w.items():
        if field not in handled and field not in WRITER_RUNTIME and not _empty(value):
            report.add(at, field, "not supported")
    return ok


def _script(script: str) -> str | None:
    """DataZen's `{{column}}` placeholders (quoted or not) as runner's bound values; None when
    the template holds anything else."""
    translated = _PLACEHOLDER.sub(lambda m: "{{ bind('" + m.group(1) + "') }}", script)
    rest = re.sub(r"\{\{ bind\('[A-Za-z_][A-Za-z0-9_]*'\) \}\}", "", translated)
    if "{{" in rest or "{%" in rest or "}}" in rest:
        return None
    return translated
